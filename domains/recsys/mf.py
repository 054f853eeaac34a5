"""Biased matrix factorisation in torch, trained by the shared trainer in vectorised mini-batches.

    r_hat(u, i) = mean + b_u + b_i + p_u . q_i

with an L2 penalty on the factors of every rating's user and item (as in Surprise's SVD, so
active users and popular items are held by their many ratings, rare ones pulled towards zero).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from domains.common.trainer import History, fit, select_device
from domains.recsys.params import RecsysTrainParams


class BiasedMF(nn.Module):
    """Users and items are rows of two tables whose last column is the bias.

    Two parameter tensors instead of four: an optimiser step costs two kernels per op, which
    matters when a model this small is bound by per-step overhead rather than arithmetic.
    """

    def __init__(self, n_users: int, n_items: int, factors: int, init_std: float, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        users = torch.randn(n_users, factors + 1, generator=g) * init_std
        items = torch.randn(n_items, factors + 1, generator=g) * init_std
        users[:, -1] = 0.0
        items[:, -1] = 0.0
        self.users = nn.Parameter(users)
        self.items = nn.Parameter(items)
        self.register_buffer("mean", torch.tensor(0.0))

    @torch.no_grad()
    def start_from_baseline(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> None:
        """Mean and biases from a few closed-form sweeps: gradient steps then only refine them."""
        mean, user_bias, item_bias = baseline_biases(users, items, ratings, len(self.users), len(self.items))
        self.mean.fill_(mean)
        self.users[:, -1] = torch.from_numpy(user_bias).float()
        self.items[:, -1] = torch.from_numpy(item_bias).float()

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u, i = _rows(self.users, users), _rows(self.items, items)
        pred = self.mean + u[..., -1] + i[..., -1] + (u[..., :-1] * i[..., :-1]).sum(-1)
        if self.training:
            # The shared trainer's loss sees only the model's output: hand it this batch's penalty too.
            penalty = u[..., :-1].square().sum(-1) + i[..., :-1].square().sum(-1)
            return torch.stack([pred, penalty], -1)
        return pred

    @torch.no_grad()
    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        """Predicted ratings of every item for each of `users`: (len(users), n_items)."""
        u = self.users[users]
        return self.mean + u[:, -1:] + self.items[:, -1] + u[:, :-1] @ self.items[:, :-1].T


def _rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for an index of any shape; index_select is the cheapest gather on CPU."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[1])


def fit_mf(
    users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
    t: RecsysTrainParams, scale: tuple[float, float], seed: int, checkpoint: Path, fingerprint: str, name: str,
) -> tuple[BiasedMF, History]:
    """Fit on (user index, item index, rating) arrays; early stopping on a seeded validation slice."""
    rng = np.random.default_rng(seed)
    val = rng.random(len(ratings)) < t.val_fraction
    model = BiasedMF(n_users, n_items, t.factors, t.init_std, seed)
    model.start_from_baseline(users[~val], items[~val], ratings[~val])
    batches = _as_batches(rng, t.batch_size, users[~val], items[~val], ratings[~val])
    val_users, val_items = torch.from_numpy(users[val]), torch.from_numpy(items[val])
    val_ratings = torch.from_numpy(ratings[val].astype(np.float32))

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(out[..., 0].float(), target) + t.reg * out[..., 1].float().mean()

    def neg_val_rmse(m: nn.Module) -> float:
        device = m.mean.device
        pred = m(val_users.to(device), val_items.to(device)).float().clamp(*scale)
        return -float(torch.sqrt(torch.mean((pred - val_ratings.to(device)) ** 2)))

    # The shared trainer's DataLoader fetches one sample at a time (~10 us each); here one sample
    # is a whole mini-batch of ratings, so an epoch costs n / batch_size fetches, not n.
    one_batch = t.model_copy(update={"batch_size": 1})
    # Deterministic mode fills every new tensor with NaN (a debugging aid); for a model made of many
    # tiny ops that is a quarter of the step. The algorithms stay deterministic without it.
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        history = fit(model, batches, loss_fn, neg_val_rmse, one_batch, seed, checkpoint, fingerprint, name=name)
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill
    return model, history


def baseline_biases(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
                    sweeps: int = 10, reg_users: float = 15.0, reg_items: float = 10.0) -> tuple[float, np.ndarray, np.ndarray]:
    """r ~ mean + b_u + b_i by alternating ridge sweeps (Surprise's BaselineOnly ALS and its defaults)."""
    mean = float(ratings.mean())
    user_bias, item_bias = np.zeros(n_users), np.zeros(n_items)
    n_u, n_i = np.bincount(users, minlength=n_users), np.bincount(items, minlength=n_items)
    for _ in range(sweeps):
        item_bias = np.bincount(items, ratings - mean - user_bias[users], n_items) / (reg_items + n_i)
        user_bias = np.bincount(users, ratings - mean - item_bias[items], n_users) / (reg_users + n_u)
    return mean, user_bias, item_bias


def _as_batches(rng: np.random.Generator, size: int, *columns: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Shuffled rows cut into (n_batches, size) tensors; the last batch is filled with rows drawn again."""
    n = len(columns[0])
    n_batches = max(1, -(-n // size))
    order = np.concatenate([rng.permutation(n), rng.integers(0, n, n_batches * size - n)])
    out = []
    for col in columns:
        dtype = np.float32 if col.dtype.kind == "f" else np.int64
        out.append(torch.from_numpy(col[order].astype(dtype).reshape(n_batches, size)))
    return tuple(out)


@torch.no_grad()
def predict_mf(model: BiasedMF, users: np.ndarray, items: np.ndarray, scale: tuple[float, float],
               batch: int = 65_536) -> np.ndarray:
    model.eval()
    device = model.mean.device
    out = [model(torch.from_numpy(users[s : s + batch]).to(device), torch.from_numpy(items[s : s + batch]).to(device))
           .float().clamp(*scale).cpu() for s in range(0, len(users), batch)]
    return torch.cat(out).numpy().astype(float) if out else np.empty(0)


def save_mf(model: BiasedMF, user_ids: np.ndarray, item_ids: np.ndarray, path: Path) -> None:
    """Weights plus the raw ids of the table rows, so the file alone can recommend."""
    torch.save({"state_dict": model.cpu().state_dict(), "user_ids": user_ids, "item_ids": item_ids,
                "factors": model.users.shape[1] - 1}, path)


def load_mf(path: Path, device: str = "auto") -> tuple[BiasedMF, pd.Index, pd.Index]:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    users, items = pd.Index(saved["user_ids"]), pd.Index(saved["item_ids"])
    model = BiasedMF(len(users), len(items), saved["factors"], 1.0, 0)
    model.load_state_dict(saved["state_dict"])
    return model.to(select_device(device)).eval(), users, items
