"""`torchrun --nproc-per-node=N tests/distributed_fit.py OUT`: the shared trainer on a fixed problem, as a
user's own script launched by torchrun; rank 0 saves the trained weights to OUT (see test_distributed.py)."""

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from domains.common import distributed
from domains.common.params import TrainerParams
from domains.common.trainer import Batches, fit


def main(out: Path) -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(1000, 6)).astype(np.float32))
    y = (x[:, 0] - x[:, 1] + 0.3 * x[:, 2] > 0).float()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))  # no dropout: no per-process draws
    loss = lambda out, target: nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), target)  # noqa: E731
    params = TrainerParams(
        epochs=4,
        batch_size=100,
        lr=0.01,
        optimizer="adamw",
        weight_decay=0.01,
        lr_schedule="cosine",
        warmup_epochs=1,
        patience=10,
        device="cpu",
        num_threads=2,
    )
    # 1000 rows in batches of 100, then 3 rows: with 2 processes the last batch splits 2 + 1.
    take = lambda rows: (x[rows], y[rows])  # noqa: E731
    history = fit(
        model,
        Batches(1003, lambda rows: take(rows % 1000)),
        loss,
        lambda m: -float(loss(m(x), y)),
        params,
        seed=3,
        checkpoint=out.with_suffix(".ckpt"),
        fingerprint="f",
    )
    if distributed.rank() == 0:
        torch.save({"state": model.state_dict(), "history": history.to_json()}, out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
