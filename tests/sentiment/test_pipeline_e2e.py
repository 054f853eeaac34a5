"""End to end in a throwaway copy of the repository: `dvc repro report@sentiment` at a small size."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from domains.common.paths import STAGES
from tests.conftest import assert_noop_repro, assert_retrain_reproduces, built_repo, run, stages_ran, trained_copy
from tests.sentiment.conftest import small_sentiment_params

pytestmark = pytest.mark.slow
MODELS = {"tfidf_logreg", "nbsvm", "fasttext", "ensemble"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return trained_copy(tmp_path_factory, "sentiment", small_sentiment_params())


def test_cold_repro_produces_every_output(repo, tmp_path_factory):
    _, proc = built_repo(
        tmp_path_factory, "sentiment", small_sentiment_params()
    )  # the cold run this copy was made from
    assert stages_ran(proc.stdout) == set(STAGES)
    data = repo / "data" / "sentiment"
    for rel in [
        "acquire/table.parquet",
        "acquire/truth.parquet",
        "validate/validated.parquet",
        "validate/quarantine.parquet",
        "validate/gate.json",
        "validate/gate.html",
        "prepare/documents.parquet",
        "prepare/counts.npz",
        "prepare/vocabulary.parquet",
        "prepare/noise_floor.json",
        "prepare/profile.json",
        "train/tfidf_logreg.joblib",
        "train/nbsvm.joblib",
        "train/fasttext.pt",
        "train/predictions.parquet",
        "train/ngram_weights.parquet",
        "train/times.json",
        "train/history.json",
        "evaluate/metrics.json",
        "evaluate/decision.json",
        "evaluate/plots/roc_curve.csv",
        "evaluate/plots/model_accuracy.csv",
        "evaluate/tables/confident_mistakes.csv",
        "evaluate/tables/top_ngrams.csv",
        "evaluate/tables/accuracy_by_length.csv",
        "evaluate/tables/noise_floor.csv",
        "report/report.html",
        "report/report.md",
        "report/provenance.json",
    ]:
        assert (data / rel).is_file(), rel
    metrics = json.loads((data / "evaluate/metrics.json").read_text())
    assert set(metrics) == MODELS
    assert {"accuracy", "f1", "auroc", "log_loss", "ece", "fit_seconds", "predict_seconds"} <= set(metrics["fasttext"])
    assert json.loads((data / "validate/gate.json").read_text())["verdict"] == "pass"
    assert json.loads((data / "evaluate/decision.json").read_text())["candidate"] == "fasttext"
    html = (data / "report/report.html").read_text()
    assert "data:image/png;base64," in html and 'src="http' not in html  # self-contained
    for part in (
        "Confident mistakes",
        "Top ngrams",
        "Noise floor",
        "Accuracy by document length",
        "Reliability diagram",
    ):
        assert part in html, part
    assert "[+" in html or "[-" in html  # highlighted n-grams, as text
    assert "label flipped by the generator" in (data / "evaluate/tables/confident_mistakes.csv").read_text()
    assert "accuracy" in run(["dvc", "metrics", "show"], repo).stdout
    # issue 19: intervals next to the point values, per-document predictions, slices by length and negation
    for model in metrics.values():
        assert model["accuracy_ci_low"] <= model["accuracy"] <= model["accuracy_ci_high"]
    predictions = pd.read_parquet(data / "evaluate/predictions.parquet")
    assert {"row", "unit", "label", "fasttext:p1", "slice:tokens", "slice:negation"} <= set(predictions)
    slices = pd.read_csv(data / "evaluate/tables/slices.csv")
    assert set(slices["slice"]) == {"length", "negation"} and "95% low" in slices
    assert "Worst slice for fasttext" in html and "95 % bootstrap interval" in html


def test_second_repro_runs_no_stage(repo):
    assert_noop_repro(repo, "sentiment")


def test_same_seed_gives_identical_accuracy_metrics(repo):
    assert_retrain_reproduces(repo, "sentiment")
