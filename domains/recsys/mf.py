"""Biased matrix factorisation in torch, trained by the shared trainer in vectorised mini-batches.

    r_hat(u, i) = mean + b_u + b_i + p_u . q_i

with an L2 penalty on the factors of every rating's user and item (as in Surprise's SVD, so
active users and popular items are held by their many ratings, rare ones pulled towards zero).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from domains.common.errors import PipelineError
from domains.common.trainer import History, fit, select_device
from domains.recsys.params import RecsysTrainParams


class BiasedMF(nn.Module):
    """Users and items are rows of two tables with two extra columns each,

        user row = [p_u, b_u, 1],  item row = [q_i, 1, b_i],  so  r_hat = mean + user . item.

    The constant columns are applied by masks when rows are read (the stored ones stay 0). A model
    this small is bound by per-op overhead, not arithmetic: one dot product over whole rows, and
    no slices (each costs a zero-filled gradient in the backward pass), makes a step much cheaper.
    """

    mean: torch.Tensor  # buffer
    user_keep: torch.Tensor  # buffer
    user_one: torch.Tensor  # buffer
    item_keep: torch.Tensor  # buffer
    item_one: torch.Tensor  # buffer
    penalised: torch.Tensor  # buffer

    def __init__(self, n_users: int, n_items: int, factors: int, init_std: float, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        width = factors + 2
        users = torch.randn(n_users, width, generator=g) * init_std
        items = torch.randn(n_items, width, generator=g) * init_std
        users[:, factors:] = 0.0
        items[:, factors:] = 0.0
        self.users = nn.Parameter(users)
        self.items = nn.Parameter(items)
        self.register_buffer("mean", torch.tensor(0.0))  # set to the training mean before fitting
        bias_u, one_u, bias_i, one_i = (torch.arange(width) == c for c in (factors, factors + 1, factors + 1, factors))
        self.register_buffer("user_keep", (~one_u).float())
        self.register_buffer("user_one", one_u.float())
        self.register_buffer("item_keep", (~one_i).float())
        self.register_buffer("item_one", one_i.float())
        self.register_buffer("penalised", (~(bias_u | one_u)).float())  # the factors: biases are not penalised

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        u, i = self.users.index_select(0, users), self.items.index_select(0, items)
        pred = self.mean + ((u * self.user_keep + self.user_one) * (i * self.item_keep + self.item_one)).sum(-1)
        if self.training:
            # The shared trainer's loss sees only the model's output: hand it this batch's penalty too.
            return pred, (u.square() + i.square()) @ self.penalised
        return pred

    @torch.no_grad()
    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        """Predicted ratings of every item for each of `users`: (len(users), n_items)."""
        u = self.users[users] * self.user_keep + self.user_one
        return self.mean + u @ (self.items * self.item_keep + self.item_one).T

    @property
    def factors(self) -> int:
        return self.users.shape[1] - 2


def fit_mf(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    t: RecsysTrainParams,
    scale: tuple[float, float],
    seed: int,
    checkpoint: Path,
    fingerprint: str,
    name: str,
) -> tuple[BiasedMF, list[History]]:
    """Fit on (user index, item index, rating) arrays; early stopping on a seeded validation slice.

    Passes of the shared trainer make a step schedule: train at `lr` until the validation error
    stops improving, then go on from the best weights at `lr * lr_decay`, and so on.
    """
    rng = np.random.default_rng(seed)
    val = rng.random(len(ratings)) < t.val_fraction
    model = BiasedMF(n_users, n_items, t.factors, t.init_std, seed)
    model.mean.fill_(float(ratings[~val].mean()))
    train = (
        torch.from_numpy(users[~val]),
        torch.from_numpy(items[~val]),
        torch.from_numpy(ratings[~val].astype(np.float32)),
    )
    val_users, val_items = torch.from_numpy(users[val]), torch.from_numpy(items[val])
    val_ratings = torch.from_numpy(ratings[val].astype(np.float32))

    def loss_fn(out: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        pred, penalty = out
        return nn.functional.mse_loss(pred.float(), target) + t.reg * penalty.float().mean()

    def neg_val_rmse(m: nn.Module) -> float:
        device = next(m.parameters()).device
        pred = m(val_users.to(device), val_items.to(device)).float().clamp(*scale)
        return -float(torch.sqrt(torch.mean((pred - val_ratings.to(device)) ** 2)))

    passes = [t.model_copy(update={"lr": t.lr * t.lr_decay**k}) for k in range(t.passes)]
    histories = []
    for k, params in enumerate(passes):
        ckpt = checkpoint.with_name(f"{checkpoint.stem}_pass{k + 1}{checkpoint.suffix}")
        histories.append(
            fit(
                model,
                train,
                loss_fn,
                neg_val_rmse,
                params,
                seed + k,
                ckpt,
                fingerprint,
                name=f"{name} lr={params.lr:g}",
            )
        )
    return model, histories


@torch.no_grad()
def predict_mf(
    model: BiasedMF, users: np.ndarray, items: np.ndarray, scale: tuple[float, float], batch: int = 65_536
) -> np.ndarray:
    model.eval()
    device = model.mean.device
    out = [
        model(torch.from_numpy(users[s : s + batch]).to(device), torch.from_numpy(items[s : s + batch]).to(device))
        .float()
        .clamp(*scale)
        .cpu()
        for s in range(0, len(users), batch)
    ]
    return torch.cat(out).numpy().astype(float) if out else np.empty(0)


def save_mf(model: BiasedMF, user_ids: np.ndarray, item_ids: np.ndarray, path: Path) -> None:
    """Weights plus the raw ids of the table rows, so the file alone can recommend. Ids as int64 tensors:
    the file then holds tensors and plain values only and loads with weights_only=True."""
    torch.save(
        {
            "state_dict": model.cpu().state_dict(),
            "user_ids": ids_tensor(user_ids),
            "item_ids": ids_tensor(item_ids),
            "factors": model.factors,
        },
        path,
    )


def load_mf(path: Path, device: str = "auto") -> tuple[BiasedMF, pd.Index, pd.Index]:
    saved = load_weights(path)
    users, items = pd.Index(saved["user_ids"].numpy()), pd.Index(saved["item_ids"].numpy())
    model = BiasedMF(len(users), len(items), saved["factors"], 1.0, 0)
    model.load_state_dict(saved["state_dict"])
    return model.to(select_device(device)).eval(), users, items


def ids_tensor(ids: np.ndarray) -> torch.Tensor:
    """Raw user or item ids (integers, as the gate requires) as an int64 tensor, for a weights-only file."""
    return torch.from_numpy(np.asarray(ids, dtype=np.int64).copy())


def load_weights(path: Path) -> dict:
    """A saved recommender file, tensors and plain values only: weights_only, so nothing in it runs on load."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise PipelineError(
            f"{path.name}: holds more than tensors and plain values (a file from before the ids were saved as "
            "tensors, or not this project's): retrain with dvc repro"
        ) from None
