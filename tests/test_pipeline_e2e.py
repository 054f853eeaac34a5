"""End to end in a throwaway copy of the repository: real `dvc repro`, a real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from domains.common.paths import STAGES, stage_record
from tests.conftest import (
    assert_noop_repro,
    assert_retrain_reproduces,
    built_repo,
    run,
    small_fraud_params,
    stages_ran,
    trained_copy,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return trained_copy(tmp_path_factory, "fraud", small_fraud_params())


def _metrics(root: Path) -> dict:
    return json.loads((root / "data/fraud/evaluate/metrics.json").read_text())


def test_cold_repro_produces_every_output(repo, tmp_path_factory):
    _, proc = built_repo(tmp_path_factory, "fraud", small_fraud_params())  # the cold run this copy was made from
    assert stages_ran(proc.stdout) == set(STAGES)
    data = repo / "data" / "fraud"
    for rel in [
        "acquire/table.parquet",
        "validate/validated.parquet",
        "validate/gate.json",
        "validate/gate.html",
        "prepare/features.parquet",
        "train/mlp.pt",
        "train/logreg.joblib",
        "train/hgb.joblib",
        "evaluate/metrics.json",
        "evaluate/decision.json",
        "evaluate/plots/pr_curve.csv",
        "report/report.html",
        "report/report.md",
        "report/provenance.json",
    ]:
        assert (data / rel).is_file(), rel
    assert set(_metrics(repo)) == {"logreg", "hgb", "mlp"}
    html = (data / "report/report.html").read_text()
    assert "data:image/png;base64," in html and 'src="http' not in html  # self-contained
    provenance = json.loads((data / "report/provenance.json").read_text())
    assert provenance["dvc_lock"]["train"] and len(provenance["git_commit"]) >= 40
    # The device is the one training ran on (the train process's threads), not the report process's.
    train_record = json.loads(stage_record(repo, "fraud", "train").read_text())
    assert provenance["device"] == train_record["device"]
    assert train_record["device"].startswith("cuda") or train_record["device"].endswith(", 1 torch threads")
    assert "average_precision" in run(["dvc", "metrics", "show"], repo).stdout
    for model in _metrics(repo).values():  # issue 19: a 95 % interval next to each point value
        assert model["average_precision_ci_low"] <= model["average_precision"] <= model["average_precision_ci_high"]
    assert (data / "evaluate/predictions.parquet").is_file() and (data / "evaluate/tables/slices.csv").is_file()
    assert "Worst slice for mlp" in html


def test_second_repro_runs_no_stage(repo):
    assert_noop_repro(repo, "fraud")


def test_forced_stage_with_unchanged_data_stops_there(repo):
    # Timings are kept out of the outputs, so acquire's outputs come out identical and dvc.lock stays put.
    lock = (repo / "dvc.lock").read_bytes()
    proc = run(["dvc", "repro", "--force", "--single-item", "acquire@fraud"], repo)
    assert stages_ran(proc.stdout) == {"acquire"}
    assert (repo / "dvc.lock").read_bytes() == lock
    assert_noop_repro(repo, "fraud")


def test_training_param_change_reruns_only_train_and_what_follows(repo):
    run(["aiflow", "champion", "promote", "fraud"], repo)  # the challenger below is compared with it, paired
    champion = json.loads((repo / "registry/fraud.json").read_text())["champion"]
    assert champion["test_hash"] and champion["predictions_md5"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fraud"]["train"]["lr"] = 0.002
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(["dvc", "repro", "report@fraud"], repo)
    assert stages_ran(proc.stdout) == {"train", "evaluate", "report"}
    decision = json.loads((repo / "data/fraud/evaluate/decision.json").read_text())
    # Same split: the champion's saved per-card predictions came back from the DVC cache by their hash.
    assert decision["comparison"]["paired"] and not decision["comparison"]["rescored"], decision.get("comparison")
    assert "95% CI" in decision["reason"] and "vs champion v1" in decision["reason"]
    (repo / "registry/fraud.json").unlink()  # later tests start without a champion, as before


def test_same_seed_gives_identical_metrics(repo):
    assert_retrain_reproduces(repo, "fraud")


def test_prefect_flow_runs_the_stages_and_publishes_artifacts(repo, prefect_api):
    before = {r["id"] for r in httpx.post(f"{prefect_api['url']}/flow_runs/filter", json={}).json()}
    proc = run(["aiflow", "flow", "fraud", "--no-promote"], repo, env=prefect_api["env"], timeout=300)
    assert "fraud: data/fraud/report/report.html" in proc.stdout
    artifacts = httpx.post(f"{prefect_api['url']}/artifacts/filter", json={}).json()
    keys = {a["key"] for a in artifacts}
    assert {"fraud-gate", "fraud-metrics", "fraud-report"} <= keys
    gate = next(a for a in artifacts if a["key"] == "fraud-gate")
    assert "Data-quality gate: fraud" in gate["data"]
    runs = [r for r in httpx.post(f"{prefect_api['url']}/flow_runs/filter", json={}).json() if r["id"] not in before]
    assert [r["state_type"] for r in runs] == ["COMPLETED"]
    assert any(tag.startswith("commit:") for tag in runs[0]["tags"])
    # The flow ran through DVC: the lock file still describes the workspace.
    assert "up to date" in run(["dvc", "status", "report@fraud", "--with-deps"], repo).stdout
