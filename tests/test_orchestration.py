"""Scheduled operation against a real Prefect server on loopback: deployments with schedules,
a triggered run with its artifacts and promotion, a gate failure, and the shared DVC remote."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from domains.common.registry import configured_domains, load_spec
from flows.config import SETTINGS
from tests.conftest import (
    GIT,
    api_call,
    copy_repo_with,
    fraud_batches,
    run,
    set_domain_params,
    small_fraud_params,
    stop,
)
from tests.test_bad_inputs import ulb_frame

pytestmark = pytest.mark.slow


def _repo(base: Path, remote: Path) -> Path:
    root = copy_repo_with(base, "fraud", small_fraud_params())
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], root)  # not the user's cache
    return root


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _final_state(api: dict, flow_run: dict) -> dict:
    def finished():
        state = api_call("GET", f"{api['url']}/flow_runs/{flow_run['id']}")["state"]
        return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

    return _wait_for(finished, 400, f"flow run {flow_run['name']}")


def _post(api: dict, path: str, body: dict | None = None):
    return api_call("POST", f"{api['url']}{path}", body or {})


@pytest.fixture(scope="module")
def served(tmp_path_factory, prefect_api):
    """`aiflow serve` running in a repository copy, stopped at the end."""
    remote = tmp_path_factory.mktemp("remote")
    root = _repo(tmp_path_factory.mktemp("served"), remote)
    log = (root.parent / "serve.log").open("w")
    proc = subprocess.Popen(["aiflow", "serve"], cwd=root, env=prefect_api["env"], stdout=log, stderr=subprocess.STDOUT)
    try:
        expected = (
            {f"{d}-nightly" for d in configured_domains(root)}
            | {"all-domains-nightly"}
            | {f"{d}-scoring" for d in configured_domains(root) if load_spec(d).scoring is not None}
        )

        def registered():
            found = [d for d in _post(prefect_api, "/deployments/filter") if d["name"] in expected]
            return found if len(found) == len(expected) else None

        deployments = _wait_for(registered, 90, f"deployments {sorted(expected)}")
        yield {"root": root, "remote": remote, "deployments": {d["name"]: d for d in deployments}, "api": prefect_api}
    finally:
        stop(proc)
        log.close()


def test_deployments_are_scheduled_nightly(served):
    deployments = served["deployments"]
    assert {"fraud-nightly", "all-domains-nightly"} <= set(
        deployments
    )  # and one per other domain (the fixture waits for all)
    for name, deployment in deployments.items():
        cron = SETTINGS.scoring_cron if name.endswith("-scoring") else SETTINGS.cron
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == [cron]
        assert "aiflow" in deployment["tags"]

    def upcoming():
        runs = _post(served["api"], "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}})
        return [r for r in runs if r["deployment_id"] == deployments["fraud-nightly"]["id"]]

    runs = _wait_for(upcoming, 60, "scheduled runs")
    assert all(r["expected_start_time"][11:16] == "02:00" for r in runs)


def test_triggered_run_completes_promotes_and_pushes(served):
    api, root = served["api"], served["root"]
    deployment = served["deployments"]["fraud-nightly"]
    flow_run = _post(api, f"/deployments/{deployment['id']}/create_flow_run", {})
    state = _final_state(api, flow_run)
    assert state["type"] == "COMPLETED", state["message"]
    keys = {
        a["key"] for a in _post(api, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}})
    }
    assert {"fraud-gate", "fraud-metrics", "fraud-report", "fraud-provenance", "fraud-promotion"} <= keys
    tags = api_call("GET", f"{api['url']}/flow_runs/{flow_run['id']}")["tags"]
    assert any(t.startswith("commit:") for t in tags)
    registry = json.loads((root / "registry" / "fraud.json").read_text())
    assert registry["champion"]["version"] == 1
    assert any(served["remote"].rglob("*")), "nothing was pushed to the DVC remote"


def test_scoring_deployment_scores_the_inbox_and_fails_a_drifted_batch(served, tmp_path):
    api, root = served["api"], served["root"]  # the champion is v1 (the triggered run above promoted it)
    files = fraud_batches(tmp_path)
    (root / "data/fraud/inbox").mkdir(parents=True)
    files["new"].rename(root / "data/fraud/inbox/new.csv")
    deployment = served["deployments"]["fraud-scoring"]
    flow_run = _post(
        api, f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"history": str(files["history"])}}
    )
    state = _final_state(api, flow_run)
    assert state["type"] == "COMPLETED", state["message"]
    keys = {
        a["key"] for a in _post(api, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}})
    }
    assert {"fraud-scoring-verdicts", "fraud-scoring-counts", "fraud-scoring-report"} <= keys
    assert (root / "data/fraud/scores/inbox/predictions.parquet").is_file()

    import pandas as pd

    drifted = pd.read_csv(files["labelled"])
    drifted["TX_AMOUNT"] = drifted["TX_AMOUNT"] * 3 + 100
    drifted.to_csv(tmp_path / "drifted.csv", index=False)
    flow_run = _post(
        api,
        f"/deployments/{deployment['id']}/create_flow_run",
        {"parameters": {"input": str(tmp_path / "drifted.csv"), "history": str(files["history"])}},
    )
    state = _final_state(api, flow_run)
    assert state["type"] == "FAILED" and "drift blocked the fraud batch" in state["message"], state["message"]
    assert not (root / "data/fraud/scores/drifted").exists()


def test_a_second_run_with_nothing_to_do_runs_no_stage(served):
    api = served["api"]
    flow_run = _post(api, f"/deployments/{served['deployments']['fraud-nightly']['id']}/create_flow_run", {})
    state = _final_state(api, flow_run)
    assert state["type"] == "COMPLETED", state["message"]
    tasks = _post(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run["id"]]}}})
    assert {"status", "acquire@fraud", "train@fraud", "report@fraud"} <= {t["name"] for t in tasks}

    def all_logs():  # logs reach the server in batches, after the run's state: wait for the flow's last one
        logs = _post(api, "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run["id"]]}}})
        return (
            logs if any(log["task_run_id"] is None and "Finished in state" in log["message"] for log in logs) else None
        )

    logs = _wait_for(all_logs, 60, "the second run's logs")
    # `dvc status` found every stage up to date: no stage task started `dvc repro` (which logs its output).
    assert not [
        log["message"] for log in logs if "Running stage" in log["message"] or "didn't change" in log["message"]
    ]


def test_clone_pulls_every_output(served, tmp_path):
    root = served["root"]
    run([*GIT, "add", "-A"], root)
    run([*GIT, "commit", "-qm", "run results"], root)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(root), str(clone)], tmp_path)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(served["remote"])], clone)
    run(["dvc", "pull", "report@fraud", "--with-deps"], clone)
    assert (clone / "data/fraud/train/mlp.pt").is_file() and (clone / "data/fraud/report/report.html").is_file()
    status = run(["dvc", "status", "report@fraud", "--with-deps"], clone).stdout
    assert "up to date" in status, status


def test_flow_on_bad_data_fails_at_the_gate(tmp_path, prefect_api):
    root = _repo(tmp_path / "bad", tmp_path / "remote")
    frame = ulb_frame()
    frame.loc[[3, 4], "Amount"] = -5.0
    data_file = tmp_path / "creditcard.csv"
    frame.to_csv(data_file, index=False)
    params = small_fraud_params()
    params["data"] = {"source": "ulb", "path": str(data_file)}
    set_domain_params(root, "fraud", params)
    limits = f"{prefect_api['url']}/v2/concurrency_limits"
    names = [SETTINGS.training_limit, SETTINGS.stage_limit, SETTINGS.domain_limit_prefix + "fraud"]
    for name in names:  # as if no `aiflow serve` had created them on this server
        httpx.delete(f"{limits}/{name}", timeout=30)
    proc = run(["aiflow", "flow", "fraud"], root, check=False, env=prefect_api["env"], timeout=300)
    assert proc.returncode == 1
    # An ad-hoc run creates the limits it runs under: trainings never overlap unless a limit allows it.
    training, stages, domain = (api_call("GET", f"{limits}/{name}")["limit"] for name in names)
    assert training >= 1 and stages == max(1, os.cpu_count() // 2) and domain == 1  # training: a slot per GPU
    assert "gate blocked fraud: tx_amount:non_negative [pandera]: 2 of 2000 rows" in proc.stderr
    runs = _post(prefect_api, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}})
    failed = [r for r in runs if "gate blocked fraud: tx_amount:non_negative" in (r["state"]["message"] or "")]
    assert len(failed) == 1
    tasks = _post(prefect_api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [failed[0]["id"]]}}})
    by_name = {t["name"]: t for t in tasks}
    assert by_name["validate@fraud"]["run_count"] == 1  # a blocked gate is not retried
    assert "train@fraud" not in by_name or by_name["train@fraud"]["state_type"] != "COMPLETED"
    assert not (root / "data/fraud/train").exists() and not (root / "data/fraud/prepare").exists()
