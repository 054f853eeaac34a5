"""Top-k lists from the saved models, over every item the user has not rated yet.

Scores for a block of users are one matrix product (or one Surprise-equivalent matrix formula),
items the user rated are masked, and the k best kept: no per-pair loop. Every model train saves
recommends through `recommend`; a user the model cannot score (not in its training data, or with
no interaction in `train` for the item-based models) gets the popularity ranking instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import joblib
import numpy as np
import pandas as pd
import torch

from domains.common.errors import PipelineError
from domains.recsys.baselines import score_items
from domains.recsys.metrics import K, top_k
from domains.recsys.mf import load_mf
from domains.recsys.ranking import BPR, EASE, ITEM_KNN, VAE, ItemItem, TorchRanker, interactions
from domains.recsys.train import MF, POPULARITY, model_file

BATCH_USERS = 256  # bounds the (users x items) score matrices


def sample_users(holdout: pd.DataFrame, max_users: int, seed: int) -> np.ndarray:
    """The held-out users to rank for: all of them, or a seeded sample of max_users."""
    users = np.unique(holdout["user_id"])
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return users


def recommend(
    train_dir: Path,
    model: str,
    train: pd.DataFrame,
    users: np.ndarray,
    device: str = "auto",
    k: int = K,
    scorer: Scorer | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(users, k) recommended item ids, best first, and their scores; items a user rated in `train` are never recommended.

    `train` is the interaction history (user_id, item_id): it defines the catalogue (its items), what is
    masked, and, for the item-based models (EASE, item-kNN, VAE), the rows they score from. `scorer`: the
    model's scores from another runtime (the endpoint's ONNX: exported_scorer); None: the trained model.
    """
    catalogue = np.unique(train["item_id"])
    if k > len(catalogue):
        raise PipelineError(f"top-k: k={k} is more than the {len(catalogue)} items of the catalogue")
    unique, inverse = np.unique(np.asarray(users), return_inverse=True)
    scorer = scorer or load_scorer(train_dir, model, train, device)
    fallback = _popularity(train_dir, train, catalogue)
    columns = pd.Index(scorer.item_ids).get_indexer(catalogue)  # -1: an item the model never saw
    items, scores = [], []
    for s in range(0, len(unique), BATCH_USERS):
        batch = unique[s : s + BATCH_USERS]
        full = np.tile(fallback, (len(batch), 1))
        known, own = scorer.known_scores(batch)
        if known.any():
            full[known] = np.where(columns >= 0, own[:, np.maximum(columns, 0)], -np.inf)
        top = top_k(full, _seen(train, batch, catalogue), k)
        items.append(catalogue[top])
        scores.append(np.take_along_axis(full, top, axis=1))
    return np.concatenate(items)[inverse], np.concatenate(scores)[inverse]


@dataclass
class Scorer:
    item_ids: np.ndarray  # the model's columns
    knows: Callable[[np.ndarray], np.ndarray]  # raw user ids -> True where the model can score the user
    score: Callable[[np.ndarray], np.ndarray]  # known raw user ids -> (users, item_ids) scores, higher is better
    # raw user ids -> (knows, the known users' scores) in one call (another runtime); None: knows, then score
    both: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None

    def known_scores(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of `users` the model can score, and the scores of those (one row each, in order)."""
        if self.both is not None:
            return self.both(users)
        known = self.knows(users)
        return known, (self.score(users[known]) if known.any() else np.empty((0, len(self.item_ids))))


def exported_scorer(predict: Callable[[np.ndarray], pd.DataFrame]) -> Scorer:
    """A Scorer from another runtime's scores of the model (ScoreOptions.predict, recsys): `predict(users)` is a
    frame with a row per raw user id and a column per item the model scores, NaN rows for users it cannot score."""
    item_ids = predict(np.empty(0, dtype=np.int64)).columns.to_numpy()

    def both(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = predict(np.asarray(users, dtype=np.int64)).to_numpy(np.float64)
        known = ~np.isnan(scores).all(axis=1)
        return known, scores[known]

    return Scorer(item_ids, lambda u: both(u)[0], lambda u: both(u)[1], both)


def score_frame(scorer: Scorer, users: np.ndarray) -> pd.DataFrame:
    """`scorer`'s scores of raw `users` as exported_scorer reads them: a row per user, a column per item, NaN rows
    for the users it cannot score."""
    users = np.asarray(users, dtype=np.int64)
    out = np.full((len(users), len(scorer.item_ids)), np.nan)
    known, own = scorer.known_scores(users)
    out[known] = own
    return pd.DataFrame(out, index=users, columns=scorer.item_ids)


def load_scorer(train_dir: Path, model: str, train: pd.DataFrame, device: str = "auto") -> Scorer:
    file = model_file(train_dir, model)
    if not file.is_file():
        raise PipelineError(f"recommend: no trained model '{model}' ({file} not found)")
    if model == POPULARITY:
        counts = pd.read_parquet(file)
        return Scorer(
            counts["item_id"].to_numpy(),
            lambda u: np.ones(len(u), dtype=bool),
            lambda u: np.tile(counts["ratings"].to_numpy(np.float64), (len(u), 1)),
        )
    if model == MF:
        mf, user_index, item_index = load_mf(file, device)
        return by_user_row(
            user_index,
            item_index.to_numpy(),
            lambda rows: mf.score_items(torch.from_numpy(rows).to(mf.mean.device)).float().cpu().numpy(),
        )
    if model in (EASE, ITEM_KNN):
        item_item = ItemItem.load(file)
        return by_history(train, item_item.item_ids, item_item.score)
    if model in (BPR, VAE):
        ranker = TorchRanker.load(file, device)
        net, dev = cast(Any, ranker.model), next(ranker.model.parameters()).device  # BPRMF or MultVAE
        if model == BPR:
            return by_user_row(
                pd.Index(ranker.user_ids),
                ranker.item_ids,
                lambda rows: net.score_users(torch.from_numpy(rows).to(dev)).float().cpu().numpy(),
            )
        with torch.no_grad():
            return by_history(train, ranker.item_ids, lambda x: net(torch.from_numpy(x).to(dev)).float().cpu().numpy())
    algo = joblib.load(file)  # a Surprise model
    ts = algo.trainset
    surprise_items = np.array([ts.to_raw_iid(i) for i in ts.all_items()])
    return Scorer(
        surprise_items,
        lambda u: np.array([x in ts._raw2inner_id_users for x in u.tolist()], dtype=bool),
        lambda u: score_items(algo, u.tolist(), surprise_items.tolist()),
    )


def by_user_row(user_index: pd.Index, item_ids: np.ndarray, score_rows: Callable[[np.ndarray], np.ndarray]) -> Scorer:
    """Models with a row per training user (MF, BPR)."""
    return Scorer(
        item_ids,
        lambda u: user_index.get_indexer(u) >= 0,
        lambda u: score_rows(user_index.get_indexer(u).astype(np.int64)),
    )


def by_history(train: pd.DataFrame, item_ids: np.ndarray, score_history: Callable[[np.ndarray], np.ndarray]) -> Scorer:
    """Models that score a user from their interactions (EASE, item-kNN, VAE): any user with history works."""
    item_index = pd.Index(item_ids)
    known_users = set(train.loc[item_index.get_indexer(train["item_id"]) >= 0, "user_id"].tolist())

    def score(users: np.ndarray) -> np.ndarray:
        rows = train[train["user_id"].isin(users)]
        with torch.no_grad():
            return score_history(interactions(rows, pd.Index(users), item_index).toarray())

    return Scorer(item_ids, lambda u: np.array([x in known_users for x in u.tolist()], dtype=bool), score)


def _popularity(train_dir: Path, train: pd.DataFrame, catalogue: np.ndarray) -> np.ndarray:
    """Training interactions per catalogue item: the ranking for users a model cannot score."""
    file = model_file(train_dir, POPULARITY)
    counts = (
        pd.read_parquet(file).set_index("item_id")["ratings"] if file.is_file() else train["item_id"].value_counts()
    )
    return counts.reindex(catalogue, fill_value=0).to_numpy(np.float64)


def _seen(train: pd.DataFrame, users: np.ndarray, catalogue: np.ndarray) -> np.ndarray:
    """Boolean (users, catalogue): the items each of the (sorted, unique) users rated in training."""
    rows = train[train["user_id"].isin(users)]
    seen = np.zeros((len(users), len(catalogue)), dtype=bool)
    seen[np.searchsorted(users, rows["user_id"].to_numpy()), np.searchsorted(catalogue, rows["item_id"].to_numpy())] = (
        True
    )
    return seen
