"""The shared torch trainer: device choice, seeding, mixed precision on CUDA (and bf16 on a CPU with
native bf16, for the conv nets that ask), early stopping, a learning-rate schedule, a checkpoint
every epoch and resume after an interrupted run, progress on a terminal.

Training data is either whole tensors (inputs..., target) cut into shuffled mini-batches, or a
`Batches`: a function from row indices to a batch, for data that does not fit one tensor (bags of
n-grams of varying length, images decoded on the fly). An `augment` function, applied to each
training batch on the device, adds random transformations (flips, crops, pasted anomalies).

Launched by torchrun with several processes (`train.processes`, see distributed.py), `fit` trains
under DistributedDataParallel: every process draws the same shuffled batches and computes the loss
of its share of each batch, and the averaged gradients equal those of the whole batch, so the
result does not depend on the number of processes beyond float rounding and random draws
(dropout, augmentation), which are seeded per process. Rank 0 scores, checkpoints and prints.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from domains.common import distributed
from domains.common.params import TrainerParams


@dataclass(frozen=True)
class Batches:
    """`size` rows, served by `take(row indices) -> (inputs..., target)`."""

    size: int
    take: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = float("-inf")
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    device: str = "cpu"
    precision: str = "float32"  # or the autocast dtype the steps ran in (bfloat16, float16)

    def to_json(self) -> dict:
        return asdict(self)


def select_device(preference: str) -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from domains.common.errors import ParamsError

            raise ParamsError("train.device: 'cuda' requested but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool, num_threads: int) -> None:
    """Same seed and settings, same weights: seeds every RNG and pins the thread count."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(num_threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also fills each new tensor with NaN, a debugging aid that costs a quarter
        # of a step for models made of many small ops; results stay deterministic without it.
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]  # set on a module subclass
        torch.backends.cudnn.benchmark = False


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return nullcontext()
    if device.type == "cpu":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated, slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def _rows(train: tuple[torch.Tensor, ...] | Batches) -> int:
    return train.size if isinstance(train, Batches) else len(train[0])


def _shuffled_batches(
    train: tuple[torch.Tensor, ...] | Batches, size: int, generator: torch.Generator, rank: int = 0, world: int = 1
):
    """(batch, weight): mini-batches in a seeded random order, cut by indexing whole tensors (a DataLoader
    fetches and collates one row at a time, which costs more than the step itself for small models).

    With `world` processes, each takes every world-th row of each batch, and `weight` scales its mean
    loss so that the average over processes is the whole batch's mean. A process left without a row
    (a last batch smaller than `world`) computes one row with weight 0: every process must step.
    """
    order = torch.randperm(_rows(train), generator=generator)
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        weight = 1.0
        if world > 1:
            mine = rows[rank::world]
            weight = len(mine) * world / len(rows)
            rows = mine if len(mine) else rows[:1]
        yield (
            (train.take(rows) if isinstance(train, Batches) else tuple(t.index_select(0, rows) for t in train)),
            weight,
        )


def threads_per_process(num_threads: int, processes: int) -> int:
    """`num_threads` is the training's CPU budget: several processes share it."""
    return max(1, num_threads // processes)


def _schedule(optimizer: torch.optim.Optimizer, params: TrainerParams, steps_per_epoch: int):
    """Cosine decay of the learning rate over all planned steps (after an optional linear warm-up)."""
    if params.lr_schedule == "constant":
        return None
    total = max(params.epochs * steps_per_epoch, 1)
    warmup = min(params.warmup_epochs * steps_per_epoch, total - 1)

    def factor(step: int) -> float:  # a Python float: a numpy scalar lr would not load with weights_only on resume
        if step < warmup:
            return (step + 1) / warmup
        return float(0.5 * (1 + np.cos(np.pi * (step - warmup) / max(total - warmup, 1))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _to_device(tensor: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    tensor = tensor.to(device, non_blocking=True)
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last and tensor.dim() == 4 else tensor


def _progress_wanted() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor, ...] | Batches,
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    score_fn: Callable[[nn.Module], float],
    params: TrainerParams,
    seed: int,
    checkpoint: Path,
    fingerprint: str,
    name: str = "model",
    on_epoch_end: Callable[[int], None] | None = None,
    augment: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None = None,
    channels_last: bool = False,
    cpu_mixed_precision: bool = False,
) -> History:
    """Train `model` on (inputs..., target) batches with Adam or AdamW; keep the weights with the best `score_fn`.

    `loss_fn(model output, target)` gives the batch loss (the output may be a tuple, e.g. with a penalty).
    `augment(batch)` transforms each training batch on the device (random draws from torch's seeded RNG).
    `channels_last`: the model and 4-d inputs use the channels-last layout (faster convolutions, on CPU too).
    `cpu_mixed_precision`: with `params.mixed_precision`, bf16 autocast on a CPU that has native bf16 as well as
    on CUDA (convolutional models: steps about 1.5x faster; tiny MLPs and embedding models gain nothing).

    `score_fn(model)` returns a higher-is-better validation score. A checkpoint is written after
    every epoch; a later call with the same `fingerprint` (hash of data and params) resumes from it,
    and gives the same final weights as an uninterrupted run. The checkpoint is removed on success.
    """
    rank, world = distributed.rank(), distributed.world_size()
    seed_everything(seed + rank, params.deterministic, threads_per_process(params.num_threads, world))
    device = distributed.device(select_device(params.device))
    model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)  # type: ignore[call-overload]  # untyped overload
    # fused: one kernel per step instead of several per parameter (on CPU as on CUDA); same results.
    adam = torch.optim.AdamW if params.optimizer == "adamw" else torch.optim.Adam
    optimizer = adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay, fused=True)
    steps_per_epoch = -(-_rows(train) // params.batch_size)
    scheduler = _schedule(optimizer, params, steps_per_epoch)
    use_amp = params.mixed_precision and (
        device.type == "cuda" or (device.type == "cpu" and cpu_mixed_precision and cpu_has_bf16())
    )
    fp16 = use_amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()  # bf16 needs no loss scaling
    scaler = torch.amp.GradScaler("cuda", enabled=True) if fp16 else None
    shuffle = torch.Generator().manual_seed(seed)

    history = History(
        device=str(device) if world == 1 else f"{device.type} x {world} processes",
        precision=("float16" if fp16 else "bfloat16") if use_amp else "float32",
    )
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bad_epochs, start = 0, 1
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)  # tensors and plain values only
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            shuffle.set_state(state["shuffle"])
            torch.set_rng_state(state.get("torch_rng_ranks", [state["torch_rng"]] * world)[rank])
            best_state, bad_epochs = state["best_state"], state["bad_epochs"]
            history = History(**state["history"])
            start = history.resumed_from_epoch = state["epoch"] + 1
            if rank == 0:
                print(f"[{name}] resuming from checkpoint after epoch {state['epoch']}", file=sys.stderr)
    net: nn.Module = model
    if world > 1:  # after loading a checkpoint: DDP starts every process from rank 0's weights
        from torch.nn.parallel import DistributedDataParallel

        distributed.join(device)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    for epoch in range(start, params.epochs + 1):
        began = time.perf_counter()
        model.train()
        total, count = 0.0, 0.0  # summed across processes as floats
        batches = _shuffled_batches(train, params.batch_size, shuffle, rank, world)
        if _progress_wanted() and rank == 0:
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"[{name}] epoch {epoch}/{params.epochs}", leave=False, total=steps_per_epoch)
        for batch, weight in batches:
            batch = tuple(_to_device(t, device, channels_last) for t in batch)
            if augment is not None:
                batch = augment(batch)
            *inputs, target = batch
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, use_amp):
                loss = loss_fn(net(*inputs), target)
            step_loss = loss if world == 1 else loss * weight  # DDP averages: weights make it the batch's mean
            if scaler is not None and scaler.is_enabled():
                scaler.scale(step_loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                step_loss.backward()
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            rows = len(target) if weight else 0
            total += float(loss.detach()) * rows
            count += rows
        if world > 1:
            total, count = distributed.all_sum([total, count], device)
        model.eval()
        with torch.no_grad():  # rank 0 scores; every process needs the score to stop at the same epoch
            score = float(score_fn(model)) if rank == 0 else 0.0
        if world > 1:
            score = distributed.from_rank0(score, device)
        seconds = time.perf_counter() - began
        history.epochs.append(
            {"epoch": epoch, "train_loss": total / max(count, 1), "val_score": score, "seconds": seconds}
        )
        if rank == 0:
            print(
                f"[{name}] epoch {epoch}/{params.epochs} train_loss={total / max(count, 1):.4f} val_score={score:.4f} ({seconds:.1f} s)",
                file=sys.stderr,
            )
        if score > history.best_score:
            history.best_score, history.best_epoch, bad_epochs = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        rng_ranks = distributed.all_gather(torch.get_rng_state()) if world > 1 else None  # each process's draws resume
        if rank == 0:
            _save_checkpoint(
                checkpoint,
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler else None,
                    "shuffle": shuffle.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "best_state": best_state,
                    "bad_epochs": bad_epochs,
                    "history": history.to_json(),
                    **({"torch_rng_ranks": rng_ranks} if rng_ranks else {}),
                },
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if bad_epochs >= params.patience:
            history.stopped_early = True
            break

    model.load_state_dict(best_state)
    if channels_last:  # back to the layout a saved and loaded model has: its outputs then agree to the last bit
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # untyped overload
    if rank == 0:
        checkpoint.unlink(missing_ok=True)
    return history


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write-then-rename, so an interrupt never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


ROWS_ALIGNED = 64  # predict's pad_to that makes a row's bits independent of its batch (see predict)


@torch.no_grad()
def predict(
    model: nn.Module,
    inputs: torch.Tensor,
    batch_size: int = 8192,
    pad_to: int = 1,
    then: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Model outputs for `inputs` (through `then`, e.g. torch.sigmoid, when given), batched, on the model's
    device, as a numpy array.

    pad_to: each batch is padded with zero rows to a multiple of this many (their outputs dropped). Kernels
    are chosen by the number of rows, and the rows or elements left over from a kernel's tiles or vectors
    take another path (a matrix product summed in another order, a vectorised exp against a scalar one):
    unpadded, a row's last bits depend on how many rows share its batch; padded, and `then` applied before
    the padding is dropped, they do not (a batch scored in chunks gets the bits of the whole batch).
    """
    model.eval()
    device = next(model.parameters()).device
    outs = []
    for i in range(0, len(inputs), batch_size):
        batch = inputs[i : i + batch_size]
        extra = -len(batch) % pad_to
        if extra:
            batch = torch.cat([batch, batch.new_zeros((extra, *batch.shape[1:]))])
        out = model(batch.to(device))
        outs.append((then(out) if then else out)[: len(batch) - extra].float().cpu())
    return torch.cat(outs).numpy() if outs else np.empty((0,))
