"""Training in two CPU processes under torchrun (gloo): the shared trainer launched by a user's torchrun,
and the fraud train stage launching torchrun itself when `train.processes` is 2."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch

from domains.common.paths import stage_record
from domains.common.stages import run_stage
from tests.conftest import BIN, ROOT, env_with_venv, small_fraud_params, write_params

pytestmark = pytest.mark.slow
# MLP metrics of 2 processes vs 1 on the tiny fraud data: the gradients are the same, but dropout draws
# differ per process, which moves a 3-epoch model's test scores by about 0.005 here.
METRIC_TOLERANCE = 0.02


def test_ddp_under_torchrun_gives_the_single_process_weights(tmp_path):
    """Each process takes its share of every batch (an uneven last batch included), so without random
    draws two processes end with the weights of one, up to float rounding."""
    script = ROOT / "tests" / "distributed_fit.py"
    subprocess.run([BIN / "python", script, tmp_path / "one.pt"], check=True, capture_output=True, env=env_with_venv())
    two = subprocess.run(
        [BIN / "torchrun", "--standalone", "--nproc-per-node=2", script, tmp_path / "two.pt"],
        capture_output=True,
        text=True,
        env=env_with_venv(),
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one, two_saved = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for name, weights in one["state"].items():
        torch.testing.assert_close(two_saved["state"][name], weights, rtol=0, atol=1e-5)
    assert two_saved["history"]["device"] == "cpu x 2 processes"
    assert [e["epoch"] for e in two_saved["history"]["epochs"]] == [1, 2, 3, 4]
    assert two.stderr.count("[model] epoch 4/4") == 1  # rank 0 prints, the other does not
    assert not (tmp_path / "two.ckpt").exists()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A fraud project root with tiny params, acquired, gated and prepared (in-process, no DVC)."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "registry").mkdir()
    write_params(root, "fraud", small_fraud_params())
    for stage in ("acquire", "validate", "prepare"):
        run_stage(stage, "fraud", root)
    return root


def _train_section(**train) -> dict:
    section = copy.deepcopy(small_fraud_params())
    section["train"].update(train)
    return section


def _train_command(root: Path, **popen) -> subprocess.Popen:
    """`aiflow stage train fraud`, as dvc.yaml runs it."""
    return subprocess.Popen(
        [BIN / "aiflow", "stage", "train", "fraud"],
        cwd=root,
        text=True,
        env={**env_with_venv(), "AIFLOW_ROOT": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


def _train(root: Path, **train) -> str:
    write_params(root, "fraud", _train_section(**train))
    out, err = _train_command(root).communicate(timeout=300)
    assert (root / "data/fraud/train/mlp.pt").is_file(), out + err
    return err


def _evaluate(root: Path) -> dict:
    run_stage("evaluate", "fraud", root)
    return json.loads((root / "data/fraud/evaluate/metrics.json").read_text())


def test_two_processes_train_the_fraud_mlp_like_one(prepared):
    root, train_dir = prepared, prepared / "data/fraud/train"
    _train(root, processes=1)
    single, single_files = _evaluate(root), sorted(p.name for p in train_dir.iterdir())

    err = _train(root, processes=2)
    assert "$ torchrun --standalone --nproc-per-node=2" in err
    assert err.count("[fraud-mlp] epoch 3/3") == 1  # rank 0 prints, the other does not
    double = _evaluate(root)
    assert sorted(p.name for p in train_dir.iterdir()) == single_files  # one set of outputs, from rank 0
    assert not any((root / "data/fraud/.checkpoints").iterdir())
    for metric in ("auroc", "average_precision"):
        assert abs(double["mlp"][metric] - single["mlp"][metric]) <= METRIC_TOLERANCE, (
            metric,
            single["mlp"],
            double["mlp"],
        )
    assert double["logreg"] == single["logreg"] and double["hgb"] == single["hgb"]  # same code, rank 0's copy
    record = json.loads(stage_record(root, "fraud", "train").read_text())
    assert record["processes"] == 2 and record["device"].startswith("2 processes (torchrun), each on cpu")
    assert json.loads((train_dir / "history.json").read_text())["device"] == "cpu x 2 processes"


def _rank(process: psutil.Process) -> str | None:
    try:
        return process.environ().get("RANK")
    except psutil.Error:  # a helper process that has already exited
        return None


def test_a_killed_process_fails_the_stage_in_one_line_and_the_rerun_resumes(prepared):
    root = prepared
    # Small batches: epochs of about a second, so the run is still training when a process is killed.
    write_params(root, "fraud", _train_section(processes=2, epochs=8, patience=8, batch_size=32))
    checkpoint = root / "data/fraud/.checkpoints/mlp.ckpt"
    checkpoint.unlink(missing_ok=True)
    stage = _train_command(root)
    deadline = time.monotonic() + 120
    while not checkpoint.is_file():  # rank 0 writes it after the first epoch
        assert stage.poll() is None and time.monotonic() < deadline, stage.communicate()
        time.sleep(0.05)
    rank1 = [p for p in psutil.Process(stage.pid).children(recursive=True) if _rank(p) == "1"]
    assert len(rank1) == 1
    os.kill(rank1[0].pid, signal.SIGKILL)
    _, err = stage.communicate(timeout=120)

    assert stage.returncode == 1
    reason = "crashed: train@fraud: training process 1 of 2 was killed by SIGKILL; no model written"
    assert err.strip().splitlines()[-1] == reason
    assert [line for line in err.splitlines() if line.startswith(("crashed:", "error:"))] == [reason]
    assert not (root / "data/fraud/train").exists()  # no model, not even rank 0's baselines
    assert checkpoint.is_file()

    rerun = _train_command(root)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "[fraud-mlp] resuming from checkpoint after epoch" in err
    history = json.loads((root / "data/fraud/train/history.json").read_text())
    assert history["resumed_from_epoch"] >= 2 and [e["epoch"] for e in history["epochs"]] == list(range(1, 9))
    assert not checkpoint.exists()
