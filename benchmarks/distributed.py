"""Training in several processes: epochs of the medical CNN (domains/medical/train.py `train_cnn`, the
`medical:` params of params.yaml, its synthetic training split) in 1 and 2 processes under torchrun,
on CPU, and on CUDA where a GPU is present (one process per GPU).

    python -m benchmarks.distributed

On CPU: 1 process of 2 threads, 1 of 1, and 2 processes of 1 thread each (2 cores here).
Each run trains EPOCHS epochs; the first includes start-up costs, so the table shows both.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BIN, ROOT, context, print_table, save, subprocess_env

EPOCHS = 2


def worker(out: Path, device: str, processes: int, threads: int) -> None:
    """One training process (torchrun starts `processes` of them): rank 0 writes the epochs' seconds to `out`."""
    import numpy as np

    from domains.common import distributed
    from domains.common.contract import TrainEnv
    from domains.common.registry import load_params
    from domains.medical.synthetic import generate_images
    from domains.medical.train import train_cnn

    p = load_params(ROOT, "medical")
    images = generate_images(p.synthetic, p.seed)
    (x, y), (xv, yv) = images.splits["train"], images.splits["val"]
    t = p.train.model_copy(
        update={
            "device": device,
            "epochs": EPOCHS,
            "patience": EPOCHS,
            "processes": processes,
            "num_threads": threads * processes,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        _, history = train_cnn(
            t,
            p.seed,
            x[:, None],
            y[:, 0].astype(np.int64),
            xv[:, None],
            yv[:, 0].astype(np.int64),
            2,
            TrainEnv(Path(tmp), "benchmark"),
        )
    if distributed.rank() == 0:
        out.write_text(json.dumps({"train_images": len(x), "epochs": history.epochs, "device": history.device}))


def bench(device: str, processes: int, threads: int, tmp: Path) -> dict[str, Any]:
    """`processes` training processes of `threads` CPU threads each."""
    out = tmp / f"{device}-{processes}-{threads}.json"
    command = [
        str(BIN / "python"),
        "-m",
        "benchmarks.distributed",
        "worker",
        str(out),
        device,
        str(processes),
        str(threads),
    ]
    if processes > 1:
        command = [str(BIN / "torchrun"), "--standalone", f"--nproc-per-node={processes}", *command[1:]]
    env = {**subprocess_env(), "OMP_NUM_THREADS": str(threads)}
    began = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = round(time.perf_counter() - began, 2)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    seconds = [e["seconds"] for e in result["epochs"]]
    return {
        "device": device,
        "processes": processes,
        "threads_per_process": threads,
        "train_images": result["train_images"],
        "wall_s": wall,
        "first_epoch_s": round(seconds[0], 2),
        "later_epoch_s": round(statistics.median(seconds[1:]), 2),
        "val_auc": [round(e["val_score"], 4) for e in result["epochs"]],
        "trainer_device": result["device"],
    }


def main() -> int:
    import torch

    before = context()
    runs = []
    with tempfile.TemporaryDirectory(prefix="aiflow-bench-ddp-") as tmp:
        for device in ("cpu", "cuda"):
            if device == "cuda" and torch.cuda.device_count() < 2:
                print(f"skipped cuda: {torch.cuda.device_count()} GPU(s), 2 needed")
                continue
            for processes, threads in ((1, 2), (1, 1), (2, 1)) if device == "cpu" else ((1, 1), (2, 1)):
                print(f"== {device}, {processes} process(es) x {threads} thread(s) ==", flush=True)
                runs.append(bench(device, processes, threads, Path(tmp)))
    rows = [
        [
            f"{r['device']}, {r['processes']} process(es) x {r['threads_per_process']} thread(s)",
            r["first_epoch_s"],
            r["later_epoch_s"],
            r["wall_s"],
            ", ".join(f"{v:.3f}" for v in r["val_auc"]),
        ]
        for r in runs
    ]
    print_table(
        f"Medical CNN, {runs[0]['train_images']} training images: seconds per epoch, and the whole run with start-up",
        ["", "epoch 1", "epoch 2", "run (wall)", "val AUC per epoch"],
        rows,
    )
    save("distributed", {"epochs": EPOCHS, "runs": runs}, before)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main())
