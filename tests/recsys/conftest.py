"""Recsys fixtures: small params for fast real runs, and a project root for in-process stages."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, project_root


def small_recsys_params() -> dict:
    """The recsys section at a size that runs end to end in seconds."""
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text())["recsys"])
    # Tastes drive who rates what more than at the default size: at this size popularity would otherwise tie the
    # ranking models, and the end-to-end run checks a promotion on NDCG@10.
    params["synthetic"].update(n_users=120, n_items=150, n_ratings=4000, selection_strength=2.0)
    params["gate"].update(min_rows=100)
    params["prepare"].update(n_folds=3)
    params["train"].update(epochs=8, factors=8)
    params["train"]["bpr"].update(epochs=15, factors=16)
    params["train"]["vae"].update(epochs=30, hidden=64, latent=16, anneal_epochs=5)
    params["evaluate"].update(example_users=2)
    return params


@pytest.fixture
def recsys_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recsys project root for in-process stage runs (see tests.conftest.project_root)."""
    return project_root(tmp_path, monkeypatch, "recsys", small_recsys_params())
