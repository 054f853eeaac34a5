"""Ranking models trained on implicit feedback: every rating is an interaction, its value ignored.

A model trained to predict ratings does not learn what a user will watch next; these do:
- EASE (Steck 2019): an item-item weight matrix in closed form, B = I - P diag(1/diag(P)) with
  P = (X'X + lambda I)^-1, so diag(B) = 0; a user's scores are their interaction row times B.
- item-kNN: cosine similarity of items' user sets, each item keeping its most similar neighbours.
- BPR-MF (Rendle et al. 2009): user and item factors ranking an interacted item above a sampled one.
- Mult-VAE (Liang et al. 2018): a variational autoencoder of a user's item row with a multinomial
  likelihood, the KL term annealed.
Hyperparameters (lambda, neighbours, epochs) are chosen on a validation slice of the training
interactions by NDCG@10; the chosen model is then refitted on all of them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from domains.common.trainer import fit, select_device
from domains.recsys.metrics import K, ranking_metrics, top_k
from domains.recsys.mf import ids_tensor, load_weights
from domains.recsys.params import BprParams, RecsysTrainParams, VaeParams

EASE, ITEM_KNN, BPR, VAE = "ease", "item_knn", "bpr", "vae"
SCORE_BLOCK = 1024  # users scored at once during validation


def interactions(frame: pd.DataFrame, user_index: pd.Index, item_index: pd.Index) -> sp.csr_matrix:
    """Binary (users x items) matrix of the frame's pairs over the given ids; pairs outside them are left out."""
    rows, cols = user_index.get_indexer(frame["user_id"]), item_index.get_indexer(frame["item_id"])
    keep = (rows >= 0) & (cols >= 0)
    ones = np.ones(int(keep.sum()), dtype=np.float32)
    matrix = sp.csr_matrix((ones, (rows[keep], cols[keep])), shape=(len(user_index), len(item_index)))
    matrix.data[:] = 1.0  # a repeated pair is one interaction
    return matrix


# --- the models: each scores a block of users as one matrix product --------------------------


@dataclass
class ItemItem:
    """EASE and item-kNN: scores = interaction rows @ weights (items x items)."""

    item_ids: np.ndarray
    weights: np.ndarray | sp.csr_matrix

    def score(self, history: np.ndarray) -> np.ndarray:
        out = history @ self.weights if isinstance(self.weights, np.ndarray) else (self.weights.T @ history.T).T
        return np.asarray(out, dtype=np.float32)

    def save(self, path: Path) -> None:
        with path.open("wb") as f:  # np.savez would add ".npz" to a path without it
            if isinstance(self.weights, np.ndarray):
                np.savez(f, item_ids=self.item_ids, weights=self.weights)
            else:
                w = self.weights.tocsr()
                np.savez(f, item_ids=self.item_ids, data=w.data, indices=w.indices, indptr=w.indptr, shape=w.shape)

    @classmethod
    def load(cls, path: Path) -> ItemItem:
        z = np.load(path)
        if "weights" in z:
            return cls(z["item_ids"], z["weights"])
        return cls(z["item_ids"], sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"])))


def fit_ease(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE's closed form: one (items x items) inverse."""
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def fit_item_knn(x: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """Cosine similarity of items; column j keeps the `neighbours` items most similar to j (diagonal 0)."""
    gram = (x.T @ x).toarray().astype(np.float32)
    norms = np.sqrt(np.diag(gram)).copy()
    norms[norms == 0] = 1.0
    sim = gram / norms[:, None] / norms[None, :]
    np.fill_diagonal(sim, 0.0)
    n = sim.shape[0]
    if neighbours < n:
        weakest = np.argpartition(-sim, neighbours, axis=0)[neighbours:]  # per column, all but the top
        np.put_along_axis(sim, weakest, 0.0, axis=0)
    return sp.csr_matrix(sim)


class BPRMF(nn.Module):
    """score(u, i) = p_u . q_i + b_i; trained on (user, interacted item) with a uniformly sampled other item."""

    def __init__(self, n_users: int, n_items: int, factors: int, seed: int, init_std: float = 0.1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.users = nn.Parameter(torch.randn(n_users, factors, generator=g) * init_std)
        self.items = nn.Parameter(torch.randn(n_items, factors, generator=g) * init_std)
        self.bias = nn.Parameter(torch.zeros(n_items))

    def forward(self, users: torch.Tensor, positives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Negatives from torch's RNG, which the shared trainer seeds (and checkpoints).
        negatives = torch.randint(0, self.items.shape[0], positives.shape, device=positives.device)
        u, p, n = self.users[users], self.items[positives], self.items[negatives]
        margin = (u * (p - n)).sum(-1) + self.bias[positives] - self.bias[negatives]
        return margin, u.square().sum(-1) + p.square().sum(-1) + n.square().sum(-1)

    @torch.no_grad()
    def score_users(self, rows: torch.Tensor) -> torch.Tensor:
        return self.users[rows] @ self.items.T + self.bias


class MultVAE(nn.Module):
    """Liang et al. 2018: L2-normalised item row -> dropout -> tanh(hidden) -> (mu, logvar) -> tanh(hidden) -> logits."""

    steps: torch.Tensor  # buffer

    def __init__(self, n_items: int, v: VaeParams, steps_per_epoch: int, seed: int):
        super().__init__()
        with torch.random.fork_rng():  # nn.Linear draws from the global RNG: seed it here, leave it as it was
            torch.manual_seed(seed)
            self.encoder = nn.Linear(n_items, v.hidden)
            self.to_latent = nn.Linear(v.hidden, 2 * v.latent)
            self.decoder = nn.Linear(v.latent, v.hidden)
            self.to_items = nn.Linear(v.hidden, n_items)
        self.dropout = nn.Dropout(v.dropout)
        self.beta, self.anneal_steps = v.beta, max(v.anneal_epochs * steps_per_epoch, 1)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # checkpointed with the weights

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.encoder(self.dropout(nn.functional.normalize(x, dim=1))))
        mu, logvar = self.to_latent(h).chunk(2, dim=1)
        if not self.training:
            return self._decode(mu)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        kl = 0.5 * (logvar.exp() + mu.square() - 1 - logvar).sum(-1)
        self.steps += 1
        beta = self.beta * min(1.0, float(self.steps) / self.anneal_steps)
        return self._decode(z), beta * kl

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_items(torch.tanh(self.decoder(z)))


# --- validation: NDCG@10 of a slice of the training interactions ---------------------------


@dataclass
class Validation:
    """Fit on `fit`'s interactions; score NDCG@10 on `relevant` among the items not in `fit`."""

    fit: sp.csr_matrix  # (users x items) interactions the model may learn from
    users: np.ndarray  # rows with a relevant validation item
    relevant: list[set]  # per such row, its relevant item columns

    def ndcg(self, score_rows: Callable[[np.ndarray], np.ndarray]) -> float:
        hits = []
        for s in range(0, len(self.users), SCORE_BLOCK):
            rows = self.users[s : s + SCORE_BLOCK]
            top = top_k(score_rows(rows), self.fit[rows].toarray() > 0, K)
            hits.append(top)
        top = np.concatenate(hits) if hits else np.empty((0, K), dtype=np.int64)
        return ranking_metrics(top, self.relevant, self.fit.shape[1])[f"ndcg_at_{K}"]


def validation(
    frame: pd.DataFrame, val_mask: np.ndarray, relevant_min: float, user_index: pd.Index, item_index: pd.Index
) -> Validation:
    """The training interactions minus the validation slice, and the slice's relevant items per user."""
    fit_x = interactions(frame[~val_mask], user_index, item_index)
    liked = frame[val_mask & (frame["rating"].to_numpy() >= relevant_min)]
    rows, cols = user_index.get_indexer(liked["user_id"]), item_index.get_indexer(liked["item_id"])
    by_row: dict[int, set] = {}
    for r, c in zip(rows, cols):
        by_row.setdefault(int(r), set()).add(int(c))
    users = np.array(sorted(by_row), dtype=np.int64)
    return Validation(fit_x, users, [by_row[u] for u in users])


# --- selection and fitting --------------------------------------------------------------------


@dataclass
class Fitted:
    model: Any
    fit_seconds: float  # the final refit only
    selection: list[dict] = field(default_factory=list)  # every candidate setting and its validation NDCG@10
    chosen: dict = field(default_factory=dict)


def fit_ranking(
    name: str,
    frame: pd.DataFrame,
    val_mask: np.ndarray,
    relevant_min: float,
    t: RecsysTrainParams,
    seed: int,
    checkpoint_dir: Path,
    fingerprint: str,
) -> Fitted:
    """Choose `name`'s hyperparameters on the validation slice, then refit on every interaction of `frame`."""
    user_index, item_index = pd.Index(np.unique(frame["user_id"])), pd.Index(np.unique(frame["item_id"]))
    x = interactions(frame, user_index, item_index)
    val = validation(frame, val_mask, relevant_min, user_index, item_index)
    if name in (EASE, ITEM_KNN):
        grid = (
            [{"lambda": v} for v in t.ease.lambdas]
            if name == EASE
            else [{"neighbours": v} for v in t.item_knn.neighbours]
        )

        def weights(m: sp.csr_matrix, setting: dict) -> np.ndarray | sp.csr_matrix:
            return fit_ease(m, setting["lambda"]) if name == EASE else fit_item_knn(m, setting["neighbours"])

        selection = []
        for setting in grid:
            w = weights(val.fit, setting)
            selection.append(
                {
                    **setting,
                    "val_ndcg_at_10": val.ndcg(
                        lambda rows: ItemItem(item_index.to_numpy(), w).score(val.fit[rows].toarray())
                    ),
                }
            )
            _log(f"{name} {setting}: validation NDCG@{K} {selection[-1]['val_ndcg_at_10']:.4f}")
        chosen = max(selection, key=lambda r: r["val_ndcg_at_10"])
        setting = {k: v for k, v in chosen.items() if k != "val_ndcg_at_10"}
        began = time.perf_counter()
        model = ItemItem(item_index.to_numpy(), weights(x, setting))
        return Fitted(model, time.perf_counter() - began, selection, setting)
    if name == BPR:
        return _fit_torch(name, x, val, t, t.bpr, seed, checkpoint_dir, fingerprint, user_index, item_index)
    if name == VAE:
        return _fit_torch(name, x, val, t, t.vae, seed, checkpoint_dir, fingerprint, user_index, item_index)
    raise ValueError(f"unknown ranking model '{name}'")


def _fit_torch(
    name: str,
    x: sp.csr_matrix,
    val: Validation,
    t: RecsysTrainParams,
    m: BprParams | VaeParams,
    seed: int,
    checkpoint_dir: Path,
    fingerprint: str,
    user_index: pd.Index,
    item_index: pd.Index,
) -> Fitted:
    """Early stopping on the validation slice picks the epochs; the same epochs are then run on all interactions."""
    trainer = t.model_copy(
        update={
            "epochs": m.epochs,
            "batch_size": m.batch_size,
            "lr": m.lr,
            "patience": m.patience,
            "weight_decay": 0.0,
            "lr_schedule": "constant",
            "warmup_epochs": 0,
        }
    )
    device = select_device(t.device)

    def score_fn(model: nn.Module) -> float:
        return val.ndcg(lambda rows: _torch_scores(model, rows, val.fit, device))

    model = _torch_model(x.shape, m, seed)
    history = fit(
        model,
        _torch_data(name, val.fit),
        _torch_loss(m),
        score_fn,
        trainer,
        seed,
        checkpoint_dir / f"{name}_select.ckpt",
        fingerprint,
        name=f"{name} select",
    )
    epochs = max(history.best_epoch, 1)
    selection = [
        {"epochs": e["epoch"], "val_ndcg_at_10": e["val_score"], "train_loss": e["train_loss"]} for e in history.epochs
    ]
    _log(
        f"{name}: best validation NDCG@{K} {history.best_score:.4f} after {epochs} epoch(s); refit on all interactions"
    )
    ticks = count(1)  # the refit keeps its last epoch: each one scores higher than the one before
    began = time.perf_counter()
    model = _torch_model(x.shape, m, seed)
    fit(
        model,
        _torch_data(name, x),
        _torch_loss(m),
        lambda _: float(next(ticks)),
        trainer.model_copy(update={"epochs": epochs}),
        seed,
        checkpoint_dir / f"{name}.ckpt",
        fingerprint,
        name=f"{name} refit (val_score: epochs done)",
    )
    model.cpu().eval()
    return Fitted(
        TorchRanker(name, model, user_index.to_numpy(), item_index.to_numpy(), m.model_dump()),
        time.perf_counter() - began,
        selection,
        {"epochs": epochs},
    )


def _torch_model(shape: tuple[int, int], m: BprParams | VaeParams, seed: int) -> nn.Module:
    if isinstance(m, BprParams):
        return BPRMF(shape[0], shape[1], m.factors, seed)
    return MultVAE(shape[1], m, -(-shape[0] // m.batch_size), seed)


def _torch_data(name: str, x: sp.csr_matrix) -> tuple[torch.Tensor, ...]:
    if name == BPR:
        coo = x.tocoo()
        return (
            torch.from_numpy(coo.row.astype(np.int64)),
            torch.from_numpy(coo.col.astype(np.int64)),
            torch.zeros(coo.nnz),
        )
    dense = torch.from_numpy(x.toarray())
    return dense, dense


def _torch_loss(m: BprParams | VaeParams) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    if isinstance(m, BprParams):

        def bpr_loss(out: tuple[torch.Tensor, torch.Tensor], _: torch.Tensor) -> torch.Tensor:
            margin, penalty = out
            return nn.functional.softplus(-margin.float()).mean() + m.reg * penalty.float().mean()

        return bpr_loss

    def vae_loss(out: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        logits, kl = out
        return -(nn.functional.log_softmax(logits.float(), dim=1) * x).sum(-1).mean() + kl.float().mean()

    return vae_loss


@torch.no_grad()
def _torch_scores(model: nn.Module, rows: np.ndarray, history: sp.csr_matrix, device: torch.device) -> np.ndarray:
    if isinstance(model, BPRMF):
        return model.score_users(torch.from_numpy(rows).to(device)).float().cpu().numpy()
    return model(torch.from_numpy(history[rows].toarray()).to(device)).float().cpu().numpy()


@dataclass
class TorchRanker:
    """A trained BPR or VAE with the raw ids of its rows and columns, so the file alone can recommend."""

    name: str
    model: nn.Module
    user_ids: np.ndarray
    item_ids: np.ndarray
    config: dict

    def save(self, path: Path) -> None:
        torch.save(
            {
                "name": self.name,
                "state_dict": self.model.cpu().state_dict(),
                "user_ids": ids_tensor(self.user_ids),
                "item_ids": ids_tensor(self.item_ids),
                "config": self.config,
            },
            path,
        )

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> TorchRanker:
        saved = load_weights(path)
        n_users, n_items = len(saved["user_ids"]), len(saved["item_ids"])
        if saved["name"] == BPR:
            model: nn.Module = BPRMF(n_users, n_items, saved["config"]["factors"], 0)
        else:
            model = MultVAE(n_items, VaeParams(**saved["config"]), 1, 0)
        model.load_state_dict(saved["state_dict"])
        return cls(
            saved["name"],
            model.to(select_device(device)).eval(),
            saved["user_ids"].numpy(),
            saved["item_ids"].numpy(),
            saved["config"],
        )


def _log(message: str) -> None:
    print(f"[recsys] {message}", file=sys.stderr, flush=True)
