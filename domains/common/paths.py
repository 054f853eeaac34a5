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


GATE_FILE = "gate.json"  # validate: the gate's result
METRICS_FILE = "metrics.json"  # evaluate: metrics[model][metric]
DECISION_FILE = "decision.json"  # evaluate: promote or keep, with the reason


def stage_dir(root: Path, domain: str, stage: str) -> Path:
    return root / "data" / domain / stage


def stage_record(root: Path, domain: str, stage: str) -> Path:
    """What a stage records about its own run (start time, seconds, training device).

    Kept next to the stage's output folder, not in it: DVC never hashes a timing, so the same inputs give
    byte-identical outputs, `dvc.lock` stays put and a forced stage whose data did not change stops there.
    The report stage gathers these records into its provenance.
    """
    return root / "data" / domain / ".runs" / f"{stage}.json"


def checkpoint_dir(root: Path, domain: str) -> Path:
    """Training checkpoints live outside DVC outputs so they survive an interrupted run."""
    return root / "data" / domain / ".checkpoints"


def registry_file(root: Path, domain: str) -> Path:
    """Champion record of a domain (git-tracked, small JSON)."""
    return root / "registry" / f"{domain}.json"


def gate_file(root: Path, domain: str) -> Path:
    return stage_dir(root, domain, "validate") / GATE_FILE


def metrics_file(root: Path, domain: str) -> Path:
    return stage_dir(root, domain, "evaluate") / METRICS_FILE


def decision_file(root: Path, domain: str) -> Path:
    return stage_dir(root, domain, "evaluate") / DECISION_FILE


def scores_dir(root: Path, domain: str) -> Path:
    """`aiflow score`'s default output folders, one per input (not DVC outputs: scoring is not a stage)."""
    return root / "data" / domain / "scores"


def inbox_dir(root: Path, domain: str) -> Path:
    """Where the scheduled scoring deployment looks for new data by default."""
    return root / "data" / domain / "inbox"


def report_html(root: Path, domain: str) -> Path:
    return stage_dir(root, domain, "report") / "report.html"
