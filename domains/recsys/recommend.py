"""Top-k lists from the saved models, over every item the user has not rated yet."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch

from domains.recsys.baselines import score_items
from domains.recsys.metrics import K, top_k
from domains.recsys.mf import load_mf
from domains.recsys.train import MF, POPULARITY, model_file

BATCH_USERS = 256  # bounds the (users x items) score matrices


def sample_users(holdout: pd.DataFrame, max_users: int, seed: int) -> np.ndarray:
    """The held-out users to rank for: all of them, or a seeded sample of max_users."""
    users = np.unique(holdout["user_id"])
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return users


def recommend(train_dir: Path, model: str, train: pd.DataFrame, users: np.ndarray, device: str = "auto",
              k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(users, k) recommended item ids, best first, and their scores; training items are never recommended."""
    catalogue = np.unique(train["item_id"])
    scorer = _scorer(train_dir, model, catalogue, device)
    items, scores = [], []
    for s in range(0, len(users), BATCH_USERS):
        batch = users[s : s + BATCH_USERS]
        seen = _seen(train, batch, catalogue)
        full = scorer(batch)
        top = top_k(full, seen, k)
        items.append(catalogue[top])
        scores.append(np.take_along_axis(full, top, axis=1))
    return np.concatenate(items), np.concatenate(scores)


def _scorer(train_dir: Path, model: str, catalogue: np.ndarray, device: str):
    """A function: raw user ids -> (users, catalogue) scores, higher is better."""
    file = model_file(train_dir, model)
    if model == POPULARITY:
        counts = pd.read_parquet(file).set_index("item_id")["ratings"].reindex(catalogue, fill_value=0).to_numpy(float)
        return lambda users: np.tile(counts, (len(users), 1))
    if model == MF:
        mf, user_index, item_index = load_mf(file, device)
        columns = torch.from_numpy(item_index.get_indexer(catalogue))

        def score_mf(users: np.ndarray) -> np.ndarray:
            rows = torch.from_numpy(user_index.get_indexer(users)).to(mf.mean.device)
            return mf.score_items(rows)[:, columns.to(mf.mean.device)].float().cpu().numpy()
        return score_mf
    algo = joblib.load(file)
    return lambda users: score_items(algo, users.tolist(), catalogue.tolist())


def _seen(train: pd.DataFrame, users: np.ndarray, catalogue: np.ndarray) -> np.ndarray:
    """Boolean (users, catalogue): the items each user rated in training."""
    rows = train[train["user_id"].isin(users)]
    seen = np.zeros((len(users), len(catalogue)), dtype=bool)
    seen[np.searchsorted(users, rows["user_id"].to_numpy()), np.searchsorted(catalogue, rows["item_id"].to_numpy())] = True
    return seen
