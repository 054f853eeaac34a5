"""A process work pool end to end: `aiflow deploy --pool`, a real `prefect worker start`, and a triggered
deployment run that the worker executes to Completed with its artifacts, against a Prefect server of
its own on 127.0.0.1 (the deployments have the names `aiflow serve` gives them in test_orchestration.py).
The worker and the server are stopped after."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import GIT, api_call, prefect_server, run, set_domain_params, small_fraud_params, stop, trained_copy

pytestmark = pytest.mark.slow
POOL = "local-processes"


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_worker_runs_a_deployment_of_the_pool(tmp_path, tmp_path_factory):
    # The session's trained fraud repository with an evaluate param changed and committed: the worker's run
    # has real stages to do (evaluate, report) without training again.
    root = trained_copy(tmp_path_factory, "fraud", small_fraud_params())
    set_domain_params(
        root, "fraud", {**small_fraud_params(), "evaluate": {**small_fraud_params()["evaluate"], "resamples": 200}}
    )
    run([*GIT, "commit", "-qam", "fewer bootstrap resamples"], root)
    report = root / "data/fraud/report/report.html"
    before = report.read_bytes()
    (tmp_path / "home").mkdir()
    with prefect_server(tmp_path / "home") as api:
        _run_on_a_pool(root, api, tmp_path)
    assert report.read_bytes() != before  # rewritten by the worker's run
    assert "up to date" in run(["dvc", "status", "report@fraud", "--with-deps"], root).stdout


def _run_on_a_pool(root, api: dict, tmp_path) -> None:
    env = {**api["env"], "PYTHONPATH": str(root), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    run(["prefect", "work-pool", "create", POOL, "--type", "process"], root, env=env)
    deployed = run(["aiflow", "deploy", "--pool", POOL], root, env=env).stdout
    assert f"on pool {POOL}" in deployed, deployed
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        ["prefect", "worker", "start", "--pool", POOL, "--install-policy", "never"],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # Promotion and push are tested with `aiflow serve` (test_orchestration.py); here the worker runs the stages.
        triggered = run(
            [
                "prefect",
                "deployment",
                "run",
                "domain-pipeline/fraud-nightly",
                "--param",
                "promote=false",
                "--param",
                "push=false",
            ],
            root,
            env=env,
        ).stdout
        flow_run_id = triggered.split("UUID:")[1].split()[0]

        def finished():
            flow_run = api_call("GET", f"{api['url']}/flow_runs/{flow_run_id}")
            return flow_run if flow_run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        flow_run = _wait_for(finished, 400, "the worker to run the deployment")
    finally:
        stop(worker)
        log.close()
    assert worker.poll() is not None
    assert flow_run["state_type"] == "COMPLETED", (
        flow_run["state"]["message"],
        (tmp_path / "worker.log").read_text()[-3000:],
    )
    assert flow_run["work_pool_name"] == POOL and flow_run["infrastructure_pid"]  # the worker's own subprocess
    artifacts = api_call(
        "POST", f"{api['url']}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
    )
    assert {"fraud-gate", "fraud-metrics", "fraud-report", "fraud-provenance"} <= {a["key"] for a in artifacts}
