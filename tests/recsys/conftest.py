"""Recsys fixtures: small params for fast real runs, and a project root for in-process stages."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


def small_recsys_params() -> dict:
    """The recsys section at a size that runs end to end in seconds."""
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text())["recsys"])
    params["synthetic"].update(n_users=120, n_items=150, n_ratings=4000)
    params["gate"].update(min_rows=100)
    params["prepare"].update(n_folds=3)
    params["train"].update(epochs=8, factors=8)
    params["evaluate"].update(thresholds_max={"rmse": 1.2}, example_users=2)
    return params


def write_recsys_params(root: Path, section: dict) -> None:
    """A params.yaml holding only the recsys section (for in-process stage runs)."""
    (root / "params.yaml").write_text(yaml.safe_dump({"recsys": section}, sort_keys=False))


@pytest.fixture
def recsys_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root for running recsys stages in-process (params.yaml + data/), selected via AIFLOW_ROOT."""
    (tmp_path / "registry").mkdir()
    (tmp_path / "data").mkdir()
    write_recsys_params(tmp_path, small_recsys_params())
    monkeypatch.setenv("AIFLOW_ROOT", str(tmp_path))
    return tmp_path
