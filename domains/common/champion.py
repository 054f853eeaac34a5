"""The champion registry: `registry/<domain>.json`, a git-tracked, append-only log of promotions
and rollbacks. The champion is the last promoted model not rolled back; `evaluate` compares every
challenger against it (the registry is a DVC dependency of evaluate)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domains.common import paths, provenance
from domains.common.errors import PipelineError


def read_registry(root: Path, domain: str) -> dict[str, Any]:
    file = paths.registry_file(root, domain)
    if not file.is_file():
        return {"domain": domain, "champion": None, "events": []}
    return json.loads(file.read_text())


def _write(root: Path, domain: str, registry: dict[str, Any]) -> None:
    file = paths.registry_file(root, domain)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(registry, indent=2) + "\n")
    tmp.replace(file)  # never a half-written registry


def read_champion(root: Path, domain: str) -> dict[str, Any] | None:
    """The last promoted model of a domain, or None before the first promotion."""
    return read_registry(root, domain)["champion"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def train_md5(root: Path, domain: str) -> str | None:
    """The DVC hash of the trained models: identifies a model version in the DVC cache and remote."""
    return next(iter(provenance.dvc_lock_hashes(root, domain).get("train", {}).values()), None)


def predictions_md5(root: Path, domain: str) -> str | None:
    """The DVC hash of evaluate's per-unit predictions (domains.common.units), when recorded."""
    outs = provenance.dvc_lock_hashes(root, domain).get("evaluate", {})
    return next((md5 for path, md5 in outs.items() if path.endswith("/predictions.parquet")), None)


def promote(root: Path, domain: str) -> dict[str, Any]:
    """Make the evaluated challenger the champion, if its recorded decision says so."""
    decision_file = paths.decision_file(root, domain)
    if not decision_file.is_file():
        raise PipelineError(f"{domain}: nothing to promote: no evaluation yet (run `aiflow run {domain}`)")
    decision = json.loads(decision_file.read_text())
    if decision["decision"] != "promote":
        raise PipelineError(f"{domain}: not promoted: {decision['reason']}")
    registry = read_registry(root, domain)
    current = registry["champion"]
    model_hash = train_md5(root, domain)
    if current and model_hash and current.get("train_md5") == model_hash:
        raise PipelineError(f"{domain}: this model is already champion v{current['version']}")
    version = 1 + max((e["version"] for e in registry["events"] if e["event"] == "promote"), default=0)
    champion = {
        "version": version,
        "model": decision["candidate"],
        "metrics": decision["metrics"],
        "promoted_at": _now(),
        "reason": decision["reason"],
        "git_commit": provenance.git_commit(root),
        "train_md5": model_hash,
        # what a later paired comparison reuses: the split it was evaluated on and its per-unit predictions
        "test_hash": (decision.get("test_split") or {}).get("hash"),
        "predictions_md5": predictions_md5(root, domain),
    }
    registry["champion"] = champion
    registry["events"].append({"event": "promote", **champion})
    _write(root, domain, registry)
    return champion


def rollback(root: Path, domain: str) -> dict[str, Any] | None:
    """Restore the champion before the current one (None if it was the first); recorded as an event."""
    registry = read_registry(root, domain)
    stack = champion_stack(registry["events"])
    if not stack:
        raise PipelineError(f"{domain}: no champion to roll back")
    rolled_back = stack.pop()
    restored = stack[-1] if stack else None
    registry["champion"] = restored
    registry["events"].append(
        {
            "event": "rollback",
            "version": rolled_back["version"],
            "at": _now(),
            "restored_version": restored["version"] if restored else None,
        }
    )
    _write(root, domain, registry)
    return restored


def champion_stack(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replay the log: a promotion pushes a champion, a rollback pops the current one."""
    stack: list[dict[str, Any]] = []
    for event in events:
        if event["event"] == "promote":
            stack.append({k: v for k, v in event.items() if k != "event"})
        elif event["event"] == "rollback" and stack:
            stack.pop()
    return stack
