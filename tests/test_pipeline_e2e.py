"""End to end in a throwaway copy of the repository: real `dvc repro`, a real Prefect server."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from domains.common.paths import STAGES
from tests.conftest import copy_repo, env_with_venv, run, set_domain_params, small_fraud_params

pytestmark = pytest.mark.slow


def _ran(output: str) -> set[str]:
    return {line.split("'")[1].split("@")[0] for line in output.splitlines() if line.startswith("Running stage")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("repo"))
    set_domain_params(root, "fraud", small_fraud_params())
    run(["git", "-c", "user.email=t@example.com", "-c", "user.name=test", "commit", "-qam", "small params"], root)
    return root


def _metrics(root: Path) -> dict:
    return json.loads((root / "data/fraud/evaluate/metrics.json").read_text())


def test_cold_repro_produces_every_output(repo):
    proc = run(["dvc", "repro", "report@fraud"], repo)
    assert _ran(proc.stdout) == set(STAGES)
    data = repo / "data" / "fraud"
    for rel in ["acquire/table.parquet", "validate/validated.parquet", "validate/gate.json", "validate/gate.html",
                "prepare/features.parquet", "train/mlp.pt", "train/logreg.joblib", "train/hgb.joblib",
                "evaluate/metrics.json", "evaluate/decision.json", "evaluate/plots/pr_curve.csv",
                "report/report.html", "report/report.md", "report/provenance.json"]:
        assert (data / rel).is_file(), rel
    assert set(_metrics(repo)) == {"logreg", "hgb", "mlp"}
    html = (data / "report/report.html").read_text()
    assert "data:image/png;base64," in html and 'src="http' not in html  # self-contained
    provenance = json.loads((data / "report/provenance.json").read_text())
    assert provenance["dvc_lock"]["train"] and len(provenance["git_commit"]) >= 40
    assert "average_precision" in run(["dvc", "metrics", "show"], repo).stdout


def test_second_repro_runs_no_stage(repo):
    proc = run(["dvc", "repro", "report@fraud"], repo)
    assert _ran(proc.stdout) == set() and "Data and pipelines are up to date" in proc.stdout


def test_training_param_change_reruns_only_train_and_what_follows(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fraud"]["train"]["lr"] = 0.002
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(["dvc", "repro", "report@fraud"], repo)
    assert _ran(proc.stdout) == {"train", "evaluate", "report"}


def test_same_seed_gives_identical_metrics(repo):
    before = _metrics(repo)
    proc = run(["dvc", "repro", "--force", "--downstream", "train@fraud"], repo)
    assert _ran(proc.stdout) == {"train", "evaluate", "report"}
    assert _metrics(repo) == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """A real `prefect server start` on loopback, stopped at the end."""
    port = _free_port()
    home = tmp_path_factory.mktemp("prefect-home")
    env = {**env_with_venv(), "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise RuntimeError((home / "server.log").read_text())
        time.sleep(1)
    else:
        server.terminate()
        raise RuntimeError("prefect server did not start in 90 s")
    yield {"url": url, "env": {**env, "PREFECT_API_URL": url}}
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def test_prefect_flow_runs_the_stages_and_publishes_artifacts(repo, prefect_api):
    proc = run(["aiflow", "flow", "fraud"], repo, env=prefect_api["env"], timeout=300)
    assert "fraud: data/fraud/report/report.html" in proc.stdout
    artifacts = httpx.post(f"{prefect_api['url']}/artifacts/filter", json={}).json()
    keys = {a["key"] for a in artifacts}
    assert {"fraud-gate", "fraud-metrics", "fraud-report"} <= keys
    gate = next(a for a in artifacts if a["key"] == "fraud-gate")
    assert "Data-quality gate: fraud" in gate["data"]
    runs = httpx.post(f"{prefect_api['url']}/flow_runs/filter", json={}).json()
    assert {r["state_type"] for r in runs} == {"COMPLETED"} and len(runs) == 2  # all-domains + fraud
    # The flow ran through DVC: the lock file still describes the workspace.
    assert "up to date" in run(["dvc", "status", "report@fraud", "--with-deps"], repo).stdout
