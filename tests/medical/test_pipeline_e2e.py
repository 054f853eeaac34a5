"""End to end in a throwaway copy of the repository: `dvc repro report@medical` at a small size."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from domains.common.paths import STAGES
from tests.conftest import assert_noop_repro, assert_retrain_reproduces, built_repo, run, stages_ran, trained_copy
from tests.medical.conftest import small_medical_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return trained_copy(tmp_path_factory, "medical", small_medical_params())


def test_cold_repro_produces_every_output(repo, tmp_path_factory):
    _, proc = built_repo(tmp_path_factory, "medical", small_medical_params())  # the cold run this copy was made from
    assert stages_ran(proc.stdout) == set(STAGES)
    data = repo / "data" / "medical"
    for rel in [
        "acquire/table.parquet",
        "acquire/synthetic.npz",
        "acquire/truth.parquet",
        "validate/validated.parquet",
        "validate/gate.json",
        "prepare/images.npy",
        "prepare/items.parquet",
        "train/cnn.pt",
        "train/logreg.joblib",
        "train/hgb.joblib",
        "train/history.json",
        "evaluate/metrics.json",
        "evaluate/decision.json",
        "evaluate/plots/roc_curve.csv",
        "evaluate/tables/achievable.csv",
        "report/report.html",
        "report/report.md",
    ]:
        assert (data / rel).is_file(), rel
    metrics = json.loads((data / "evaluate/metrics.json").read_text())
    assert set(metrics) == {"logreg", "hgb", "cnn"}
    assert {
        "auroc",
        "accuracy",
        "accuracy_at_threshold",
        "sensitivity",
        "specificity",
        "f1",
        "ece",
        "threshold",
        "fit_seconds",
        "predict_seconds",
    } <= set(metrics["cnn"])
    assert json.loads((data / "validate/gate.json").read_text())["verdict"] == "pass"
    html = (data / "report/report.html").read_text()
    assert "data:image/png;base64," in html and 'src="http' not in html  # self-contained
    assert "Saliency (Grad-CAM)" in html and "Reliability diagram" in html and "Achievable" in html
    # issue 19: intervals next to the point values, per-image predictions, slices by class, brightness, contrast
    for model in metrics.values():
        assert model["auroc_ci_low"] <= model["auroc"] <= model["auroc_ci_high"]
    predictions = pd.read_parquet(data / "evaluate/predictions.parquet")
    assert {"row", "unit", "label", "cnn:p1", "slice:class", "slice:brightness", "slice:contrast"} <= set(predictions)
    slices = pd.read_csv(data / "evaluate/tables/slices.csv")
    assert set(slices["slice"]) == {"class", "brightness", "contrast"}
    assert set(slices.loc[slices["slice"] == "class", "metric"]) == {"accuracy"}
    decision = json.loads((data / "evaluate/decision.json").read_text())
    assert decision["slices"]["worst"]["metric"] == "auroc" and "Worst slice for cnn" in html


def test_second_repro_runs_no_stage(repo):
    assert_noop_repro(repo, "medical")


def test_same_seed_gives_identical_metrics(repo):
    assert_retrain_reproduces(repo, "medical")


def test_example_images_can_be_turned_off(repo):
    proc = run(["dvc", "exp", "run", "-S", "medical.evaluate.example_images=false", "report@medical"], repo)
    assert stages_ran(proc.stdout) == {"evaluate", "report"}
    html = (repo / "data/medical/report/report.html").read_text()
    assert "Example test images" not in html and "Saliency" not in html and "aggregates only" in html
