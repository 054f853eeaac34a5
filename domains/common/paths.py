"""The one place that knows where things live. Stage outputs: data/<domain>/<stage>/."""

from __future__ import annotations

import os
from pathlib import Path

STAGES: tuple[str, ...] = ("acquire", "validate", "prepare", "train", "evaluate", "report")


def project_root() -> Path:
    """The repository root: $AIFLOW_ROOT, else the nearest parent holding dvc.yaml, else cwd."""
    if env := os.environ.get("AIFLOW_ROOT"):
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    return here


def params_file(root: Path) -> Path:
    return root / "params.yaml"


STAGE_RECORD = "_stage.json"  # what a stage records about its own run, inside its output folder


def stage_dir(root: Path, domain: str, stage: str) -> Path:
    return root / "data" / domain / stage


def checkpoint_dir(root: Path, domain: str) -> Path:
    """Training checkpoints live outside DVC outputs so they survive an interrupted run."""
    return root / "data" / domain / ".checkpoints"


def registry_file(root: Path, domain: str) -> Path:
    """Champion record of a domain (git-tracked, small JSON)."""
    return root / "registry" / f"{domain}.json"


def report_html(root: Path, domain: str) -> Path:
    return stage_dir(root, domain, "report") / "report.html"
