"""End to end in a throwaway copy of the repository: `dvc repro report@recsys` at a small size."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from domains.common.paths import STAGES
from tests.conftest import assert_noop_repro, assert_retrain_reproduces, built_repo, run, stages_ran, trained_copy
from tests.recsys.conftest import small_recsys_params

pytestmark = pytest.mark.slow
MODELS = {"baseline_only", "svd", "svdpp", "knn_baseline", "mf", "ease", "item_knn", "bpr", "vae", "popularity"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return trained_copy(tmp_path_factory, "recsys", small_recsys_params())


def test_cold_repro_produces_every_output(repo, tmp_path_factory):
    _, proc = built_repo(tmp_path_factory, "recsys", small_recsys_params())  # the cold run this copy was made from
    assert stages_ran(proc.stdout) == set(STAGES)
    data = repo / "data" / "recsys"
    for rel in [
        "acquire/table.parquet",
        "acquire/items.parquet",
        "acquire/truth.parquet",
        "validate/validated.parquet",
        "validate/quarantine.parquet",
        "validate/gate.json",
        "validate/gate.html",
        "prepare/ratings.parquet",
        "prepare/noise_floor.json",
        "prepare/profile.json",
        "train/mf.pt",
        "train/svd.joblib",
        "train/svdpp.joblib",
        "train/knn_baseline.joblib",
        "train/baseline_only.joblib",
        "train/popularity.parquet",
        "train/predictions.parquet",
        "train/ease.npz",
        "train/item_knn.npz",
        "train/bpr.pt",
        "train/vae.pt",
        "train/ranking.json",
        "train/times.json",
        "train/history.json",
        "evaluate/metrics.json",
        "evaluate/decision.json",
        "evaluate/plots/model_rmse.csv",
        "evaluate/plots/topk_ndcg.csv",
        "evaluate/plots/rmse_by_activity.csv",
        "evaluate/tables/top10_examples.csv",
        "evaluate/tables/noise_floor.csv",
        "evaluate/tables/ranking_model_selection.csv",
        "report/report.html",
        "report/report.md",
        "report/provenance.json",
    ]:
        assert (data / rel).is_file(), rel
    metrics = json.loads((data / "evaluate/metrics.json").read_text())
    assert set(metrics) == MODELS
    assert {
        "rmse",
        "mae",
        "precision_at_10",
        "recall_at_10",
        "ndcg_at_10",
        "map_at_10",
        "coverage",
        "novelty",
        "fit_seconds",
        "predict_seconds",
    } <= set(metrics["mf"])
    assert {
        "precision_at_10",
        "recall_at_10",
        "ndcg_at_10",
        "map_at_10",
        "coverage",
        "novelty",
        "ndcg_over_popularity",
        "fit_seconds",
    } == {k for k in metrics["ease"] if "_ci_" not in k}
    # issue 19: intervals over users next to the point values; slices by activity and held-out item popularity
    assert (
        metrics["ease"]["ndcg_at_10_ci_low"] <= metrics["ease"]["ndcg_at_10"] <= metrics["ease"]["ndcg_at_10_ci_high"]
    )
    assert metrics["mf"]["rmse_ci_low"] < metrics["mf"]["rmse_ci_high"]
    slices = pd.read_csv(data / "evaluate/tables/slices.csv")
    assert set(slices["slice"]) == {"activity", "popularity"}
    assert json.loads((data / "validate/gate.json").read_text())["verdict"] == "pass"
    decision = json.loads((data / "evaluate/decision.json").read_text())
    assert (decision["candidate"], decision["primary_metric"], decision["decision"]) == (
        "ease",
        "ndcg_at_10",
        "promote",
    ), decision
    examples = pd.read_csv(data / "evaluate/tables/top10_examples.csv")  # the candidate's lists
    assert len(examples) == 2 * 10 and examples["title"].str.startswith("Item ").all()
    html = (data / "report/report.html").read_text()
    assert "data:image/png;base64," in html and 'src="http' not in html  # self-contained
    assert "Noise floor" in html and "Top10 examples" in html and "Error by user activity" in html
    assert "NDCG@10 per model" in html and "Long tail" in html
    assert "ndcg_at_10" in run(["dvc", "metrics", "show"], repo).stdout


def test_second_repro_runs_no_stage(repo):
    assert_noop_repro(repo, "recsys")


def test_same_seed_gives_identical_accuracy_metrics(repo):
    assert_retrain_reproduces(repo, "recsys")
