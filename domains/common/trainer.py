"""The shared torch trainer: device choice, seeding, mixed precision on CUDA, early stopping,
a checkpoint every epoch and resume after an interrupted run, progress on a terminal."""

from __future__ import annotations

import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from domains.common.params import TrainerParams


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = float("-inf")
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    device: str = "cpu"

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
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.benchmark = False


def _autocast(device: torch.device, enabled: bool):
    if device.type != "cuda" or not enabled:
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def _shuffled_batches(tensors: tuple[torch.Tensor, ...], size: int, generator: torch.Generator):
    """Mini-batches in a seeded random order, cut by indexing whole tensors: a DataLoader fetches
    and collates one row at a time, which costs more than the step itself for small models."""
    order = torch.randperm(len(tensors[0]), generator=generator)
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        yield tuple(t.index_select(0, rows) for t in tensors)


def _progress_wanted() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor, ...],
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    score_fn: Callable[[nn.Module], float],
    params: TrainerParams,
    seed: int,
    checkpoint: Path,
    fingerprint: str,
    name: str = "model",
    on_epoch_end: Callable[[int], None] | None = None,
) -> History:
    """Train `model` on tensors (inputs..., target) with Adam; keep the weights with the best `score_fn`.

    `loss_fn(model output, target)` gives the batch loss (the output may be a tuple, e.g. with a penalty).

    `score_fn(model)` returns a higher-is-better validation score. A checkpoint is written after
    every epoch; a later call with the same `fingerprint` (hash of data and params) resumes from it,
    and gives the same final weights as an uninterrupted run. The checkpoint is removed on success.
    """
    seed_everything(seed, params.deterministic, params.num_threads)
    device = select_device(params.device)
    model.to(device)
    # fused: one kernel per step instead of several per parameter (on CPU as on CUDA); same results.
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay, fused=True)
    use_amp = params.mixed_precision and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported()) if use_amp else None
    shuffle = torch.Generator().manual_seed(seed)

    history = History(device=str(device))
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bad_epochs, start = 0, 1
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            shuffle.set_state(state["shuffle"])
            torch.set_rng_state(state["torch_rng"])
            best_state, bad_epochs = state["best_state"], state["bad_epochs"]
            history = History(**state["history"])
            start = history.resumed_from_epoch = state["epoch"] + 1
            print(f"[{name}] resuming from checkpoint after epoch {state['epoch']}", file=sys.stderr)

    for epoch in range(start, params.epochs + 1):
        began = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        batches = _shuffled_batches(train, params.batch_size, shuffle)
        if _progress_wanted():
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"[{name}] epoch {epoch}/{params.epochs}", leave=False,
                           total=-(-len(train[0]) // params.batch_size))
        for batch in batches:
            *inputs, target = (t.to(device, non_blocking=True) for t in batch)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, use_amp):
                loss = loss_fn(model(*inputs), target)
            if scaler is not None and scaler.is_enabled():
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            total += float(loss.detach()) * len(target)
            count += len(target)
        model.eval()
        with torch.no_grad():
            score = float(score_fn(model))
        seconds = time.perf_counter() - began
        history.epochs.append({"epoch": epoch, "train_loss": total / max(count, 1), "val_score": score, "seconds": seconds})
        print(f"[{name}] epoch {epoch}/{params.epochs} train_loss={total / max(count, 1):.4f} val_score={score:.4f} ({seconds:.1f} s)", file=sys.stderr)
        if score > history.best_score:
            history.best_score, history.best_epoch, bad_epochs = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        _save_checkpoint(checkpoint, {
            "fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "shuffle": shuffle.get_state(), "torch_rng": torch.get_rng_state(),
            "best_state": best_state, "bad_epochs": bad_epochs, "history": history.to_json(),
        })
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if bad_epochs >= params.patience:
            history.stopped_early = True
            break

    model.load_state_dict(best_state)
    checkpoint.unlink(missing_ok=True)
    return history


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write-then-rename, so an interrupt never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int = 8192) -> np.ndarray:
    """Model outputs for `inputs`, batched, on the model's device, as a numpy array."""
    model.eval()
    device = next(model.parameters()).device
    outs = [model(inputs[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(inputs), batch_size)]
    return torch.cat(outs).numpy() if outs else np.empty((0,))
