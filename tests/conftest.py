"""Shared fixtures: small params for fast real runs, and throwaway copies of the repository."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def small_fraud_params() -> dict:
    """The fraud section at a size that runs end to end in seconds, not minutes."""
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text())["fraud"])
    params["synthetic"].update(n_customers=300, n_terminals=600, n_days=45)
    params["prepare"].update(
        customer_windows_days=[1, 7],
        terminal_windows_days=[1, 7],
        delay_days=3,
        train_length=14,
        val_length=4,
        gap_length=3,
        test_length=7,
    )
    params["train"].update(
        epochs=3, patience=2, hgb_max_iter=20, batch_size=256, num_threads=1
    )  # not the machine's default, so the report shows what training used
    params["gate"]["min_rows"] = 100
    params["evaluate"].update(thresholds_min={"auroc": 0.6}, baselines=[])  # three epochs: the policy is tested apart
    return params


def fraud_batches(folder: Path) -> dict[str, Path]:
    """New transactions to score (another seed than training): 20 days of labelled history, then 10 days
    of new transactions, with and without labels."""
    import pandas as pd

    from domains.fraud.params import SyntheticParams
    from domains.fraud.synthetic import generate_transactions

    tx = generate_transactions(SyntheticParams(n_customers=300, n_terminals=600, n_days=30), seed=7)
    tx["TX_DATETIME"] = pd.to_datetime(tx["TX_DATETIME"])
    cut = tx["TX_DATETIME"].min() + pd.Timedelta(days=20)
    files = {"history": folder / "history.csv", "labelled": folder / "labelled.csv", "new": folder / "new.csv"}
    tx[tx["TX_DATETIME"] < cut].to_csv(files["history"], index=False)
    tx[tx["TX_DATETIME"] >= cut].to_csv(files["labelled"], index=False)
    tx[tx["TX_DATETIME"] >= cut].drop(columns=["TX_FRAUD", "TX_FRAUD_SCENARIO"]).to_csv(files["new"], index=False)
    return files


def score_in_process(domain: str, repo: Path, monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    """`aiflow score <domain> ...` in this process (no interpreter start-up): exit code and stderr."""
    proc = aiflow_in_process(repo, monkeypatch, capsys, "score", domain, *args)
    return proc.returncode, proc.stderr


def scored_batch(repo: Path, domain: str, batch: Path, source: str, model: str) -> Any:
    """The domain's own read and score of `batch` with the workspace's trained model (no gate, no drift
    verdict): its predictions and drift columns (a contract.Scored)."""
    from domains.common.contract import ScoreOptions
    from domains.common.registry import load_params, load_spec

    spec = load_spec(domain)
    model_dir = repo / "data" / domain / "train"
    trained = spec.params_model.model_validate(
        {
            **load_params(repo, domain).model_dump(mode="json"),
            **json.loads((model_dir / "trained_params.json").read_text()),
        }
    )
    assert spec.scoring is not None
    return spec.scoring.score(trained, model_dir, model, spec.scoring.read(trained, batch, source), ScoreOptions())


def drift_psi(repo: Path, domain: str, batch: Path, source: str, model: str) -> dict[str, float]:
    """PSI per drift column of `batch` against the profile of the workspace's trained model: how far each
    column moved, blocked or not."""
    from domains.common import drift

    profile = json.loads((repo / "data" / domain / "train" / "reference_profile.json").read_text())
    frame = scored_batch(repo, domain, batch, source, model).drift
    return {c.column: c.psi for c in drift.compare(profile, frame, None, 0.1, 0.25, 1).checks}


def aiflow_in_process(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys, *args: str, check: bool = False
) -> subprocess.CompletedProcess:
    """`aiflow ...` run in this process on `repo`, as a finished process (exit code, stdout, stderr): what the
    command line does, without the ten-odd seconds of interpreter and library start-up per call."""
    from aiflow.cli import main

    monkeypatch.setenv("AIFLOW_ROOT", str(repo))
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    proc = subprocess.CompletedProcess(["aiflow", *map(str, args)], code, out.out, out.err)
    if check and code != 0:
        raise AssertionError(f"aiflow {' '.join(map(str, args))} exited {code}\n{out.out}\n{out.err}")
    return proc


def read_scores(out: Path) -> tuple[Any, dict]:
    """A scoring output folder's predictions and manifest."""
    import pandas as pd

    return pd.read_parquet(out / "predictions.parquet"), json.loads((out / "manifest.json").read_text())


def write_params(root: Path, domain: str, section: dict) -> None:
    """A params.yaml holding only one domain's section (for in-process stage runs)."""
    (root / "params.yaml").write_text(yaml.safe_dump({domain: section}, sort_keys=False))


def digest(path: Path) -> str:
    """Content hash of a file, or of every file under a folder (relative paths included)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return hashlib.sha256("".join(f"{p.relative_to(path)}:{digest(p)}" for p in files).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_stopped(root: Path, domain: str, data: Path, before: str, code: int, err: str, *expected: str) -> None:
    """A bad input stopped before training: exit 1, one line per failure and no traceback, each
    `expected` part in the message, the input untouched, nothing validated, no model."""
    assert code == 1
    for part in expected:
        assert part in err, err
    assert "Traceback" not in err and all(line.startswith(("error:", "  ")) for line in err.strip().splitlines()), err
    assert digest(data) == before  # input untouched
    assert not (root / "data" / domain / "validate" / "validated.parquet").exists()
    assert not (root / "data" / domain / "train").exists()


def run_to_gate(
    root: Path, domain: str, section: dict, source: str, data_file: Path, capsys, **gate
) -> tuple[int, str]:
    """acquire, then validate if acquire passed, in-process on `data_file`: the exit code and stderr."""
    from aiflow.cli import main

    write_params(
        root,
        domain,
        {**section, "data": {"source": source, "path": str(data_file)}, "gate": {**section["gate"], **gate}},
    )
    code = main(["stage", "acquire", domain])
    if code == 0:
        code = main(["stage", "validate", domain])
    return code, capsys.readouterr().err


def stop(proc: subprocess.Popen) -> None:
    """Terminate a background process, killing it if it does not exit within 20 s; returns once it has exited
    (a killed process is reaped too, so `poll()` afterwards tells it has gone)."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


def set_domain_params(root: Path, domain: str, section: dict) -> None:
    """Replace one domain's section of root/params.yaml, keeping the others (dvc.yaml needs them all)."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[domain] = section
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def env_with_venv() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env.pop("AIFLOW_ROOT", None)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    # The code of the repository at cwd, not the checkout the venv's editable install points at.
    env = {**kwargs.pop("env", env_with_venv()), "PYTHONPATH": str(cwd)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def stages_ran(dvc_output: str) -> set[str]:
    """The stages (without their domain) that a `dvc repro` printed it was running."""
    return {line.split("'")[1].split("@")[0] for line in dvc_output.splitlines() if line.startswith("Running stage")}


TIMINGS = ("fit_seconds", "predict_seconds", "images_per_second")  # differ from run to run: never compared


def scores(root: Path, domain: str) -> dict:
    """A domain's evaluate metrics without the timings."""
    metrics = json.loads((root / "data" / domain / "evaluate" / "metrics.json").read_text())
    return {model: {k: v for k, v in values.items() if k not in TIMINGS} for model, values in metrics.items()}


def assert_noop_repro(repo: Path, domain: str) -> None:
    """Nothing changed, so `dvc repro` runs no stage."""
    proc = run(["dvc", "repro", f"report@{domain}"], repo)
    assert stages_ran(proc.stdout) == set() and "Data and pipelines are up to date" in proc.stdout


def assert_retrain_reproduces(repo: Path, domain: str) -> None:
    """Training again with the same params and seed gives the same metrics (timings aside)."""
    before = scores(repo, domain)
    proc = run(["dvc", "repro", "--force", "--downstream", f"train@{domain}"], repo)
    assert stages_ran(proc.stdout) == {"train", "evaluate", "report"}
    assert scores(repo, domain) == before


def copy_repo(dest: Path) -> Path:
    """A fresh git+DVC repository holding this project's tracked (and new, unignored) files."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in listed:
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("data/", "dvc.lock")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / "data").mkdir(exist_ok=True)
    run(["git", "init", "-q"], dest)
    run([*GIT, "add", "-A"], dest)
    run([*GIT, "commit", "-qm", "copy"], dest)
    return dest


def copy_repo_with(dest: Path, domain: str, section: dict) -> Path:
    """copy_repo, with `section` committed as the domain's params."""
    root = copy_repo(dest)
    set_domain_params(root, domain, section)
    run([*GIT, "commit", "-qam", f"{domain} params"], root)
    return root


_BUILT: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}


def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This run's temp folder, shared by all its test processes (under pytest-xdist, each worker's own
    base temp is a folder inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_repo(
    tmp_path_factory: pytest.TempPathFactory, domain: str, section: dict
) -> tuple[Path, subprocess.CompletedProcess]:
    """One cold `dvc repro report@<domain>` per domain and params in the whole run, with what it printed.

    Never changed once built: tests get a copy (`trained_copy`), so each module still starts from a cold
    build's outputs while the suite pays for the training once instead of once per module. The test
    processes share it: the first to need it builds it under a file lock, the others wait and reuse it.
    """
    from filelock import FileLock  # a dependency of DVC's

    key = f"{domain}-{hashlib.sha256(json.dumps(section, sort_keys=True).encode()).hexdigest()[:12]}"
    if key not in _BUILT:
        folder, shared = session_dir(tmp_path_factory) / f"built-{key}", session_dir(tmp_path_factory)
        record = folder / "build.json"
        with FileLock(shared / f"built-{key}.lock"):
            if not record.is_file():
                shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
                folder.mkdir()
                proc = run(["dvc", "repro", f"report@{domain}"], copy_repo_with(folder / "repo", domain, section))
                record.write_text(json.dumps({"stdout": proc.stdout, "stderr": proc.stderr, "args": proc.args}))
        printed = json.loads(record.read_text())
        _BUILT[key] = (
            folder / "repo",
            subprocess.CompletedProcess(printed["args"], 0, printed["stdout"], printed["stderr"]),
        )
    return _BUILT[key]


def trained_copy(tmp_path_factory: pytest.TempPathFactory, domain: str, section: dict, **changes: dict) -> Path:
    """A copy of the session's trained repository for `section` (git history, DVC cache and outputs included).

    `changes` update sub-sections of the domain's params (e.g. `evaluate={"candidate": "ensemble"}`): they are
    committed and `dvc repro` brings the copy up to date, rerunning only the stages they concern.
    """
    built, _ = built_repo(tmp_path_factory, domain, section)
    root = tmp_path_factory.mktemp(f"trained-{domain}") / "repo"
    shutil.copytree(built, root, symlinks=True)
    if changes:
        changed = copy.deepcopy(section)
        for key, values in changes.items():
            changed[key].update(values)
        set_domain_params(root, domain, changed)
        run([*GIT, "commit", "-qam", f"{domain} params for this module"], root)
        run(["dvc", "repro", f"report@{domain}"], root)
    return root


def promoted_copy(tmp_path_factory: pytest.TempPathFactory, domain: str, section: dict, **changes: dict) -> Path:
    """trained_copy with its candidate promoted champion (what scoring and serving load)."""
    root = trained_copy(tmp_path_factory, domain, section, **changes)
    run(["aiflow", "champion", "promote", domain], root)
    return root


def project_root(path: Path, monkeypatch: pytest.MonkeyPatch, domain: str, section: dict) -> Path:
    """A project root for running stages in-process (params.yaml + data/), selected via AIFLOW_ROOT."""
    (path / "registry").mkdir()
    (path / "data").mkdir()
    write_params(path, domain, section)
    monkeypatch.setenv("AIFLOW_ROOT", str(path))
    return path


@pytest.fixture
def stage_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fraud project root for in-process stage runs (see project_root)."""
    return project_root(tmp_path, monkeypatch, "fraud", small_fraud_params())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def prefect_server(home: Path) -> Iterator[dict]:
    """A real `prefect server start` on a free loopback port, with its own PREFECT_HOME; stopped on exit.

    Yields the API URL and the environment that points clients (flows, `aiflow serve`) at it.
    """
    port = _free_port()
    env = {
        **env_with_venv(),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start:\n{(home / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        yield {"url": url, "env": {**env, "PREFECT_API_URL": url}}
    finally:
        stop(server)
        log.close()


def api_call(method: str, url: str, body: dict | None = None) -> Any:
    """One Prefect REST call, as JSON. Retried while the SQLite-backed server answers 503 (database
    locked while it records a flow's states); a GET also when no answer comes within 30 s (the same lock,
    seen once on two cores under the whole suite: a read is safe to ask again). Any other error status
    fails the test."""
    for attempt in range(50):
        try:
            response = httpx.request(method, url, json=body, timeout=30)
        except httpx.TimeoutException:
            if method != "GET" or attempt >= 2:
                raise
            continue
        if response.status_code != 503:
            break
        time.sleep(0.2)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> Iterator[dict]:
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as api:
        yield api
