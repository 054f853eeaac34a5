"""Where a result came from: commit, dvc.lock hashes, params, package versions, device, stage times."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from domains.common import paths
from domains.common.params import parse_yaml

PACKAGES = (
    "torch",
    "prefect",
    "dvc",
    "great-expectations",
    "pandera",
    "scikit-learn",
    "scikit-surprise",
    "pandas",
    "numpy",
)


def git_commit(root: Path) -> str:
    """HEAD's commit, with '+dirty' when tracked files differ from it; 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def dvc_lock_hashes(root: Path, domain: str) -> dict[str, dict[str, str]]:
    """Per stage of this domain: the md5 of each out recorded in dvc.lock."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    stages = (parse_yaml(lock.read_text()) or {}).get("stages", {})
    found = {}
    for name, entry in stages.items():
        stage, _, item = name.partition("@")
        if item == domain:
            found[stage] = {out["path"]: out.get("md5", "") for out in entry.get("outs", [])}
    return found


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def stage_records(root: Path, domain: str) -> dict[str, dict[str, Any]]:
    """What each stage that ran here recorded about itself (seconds; device for train). A stage whose
    outputs DVC restored from its cache has no record, or an earlier run's (its `started_at` says which)."""
    records = {}
    for stage in paths.STAGES:
        record = paths.stage_record(root, domain, stage)
        if record.is_file():
            records[stage] = json.loads(record.read_text())
    return records


def collect(root: Path, domain: str, params: dict[str, Any]) -> dict[str, Any]:
    records = stage_records(root, domain)
    return {
        "git_commit": git_commit(root),
        "dvc_lock": dvc_lock_hashes(root, domain),
        "params": params,
        "packages": package_versions(),
        "python": platform.python_version(),
        "device": records.get("train", {}).get("device") or device_description(),
        "stage_seconds": {stage: record["seconds"] for stage, record in records.items()},
    }
