"""Surprise's baselines with their defaults, a popularity ranking, and vectorised scoring for top-k.

Rating predictions come from Surprise itself (`algo.test`), as in its published benchmark. For
top-k every unseen item of every user must be scored; one `predict` call per pair is far too slow
for that, so `score_items` computes the same estimates as Surprise's `estimate` with matrices
(the unit tests check them against Surprise's own predictions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from surprise import SVD, BaselineOnly, Dataset, KNNBaseline, Reader, SVDpp
from surprise.prediction_algorithms.algo_base import AlgoBase
from surprise.trainset import Trainset

from domains.common.errors import PipelineError


def make_surprise(name: str, seed: int) -> AlgoBase:
    """A Surprise model with the library's defaults (verbose off; random_state for the seeded ones)."""
    if name == "baseline_only":
        return BaselineOnly(verbose=False)
    if name == "svd":
        return SVD(random_state=seed)
    if name == "svdpp":
        return SVDpp(random_state=seed)
    if name == "knn_baseline":
        return KNNBaseline(verbose=False)
    raise PipelineError(f"unknown Surprise model '{name}'")


def to_trainset(frame: pd.DataFrame, scale: tuple[float, float]) -> Trainset:
    data = Dataset.load_from_df(frame[["user_id", "item_id", "rating"]], Reader(rating_scale=scale))
    return data.build_full_trainset()


def predict_surprise(algo: AlgoBase, frame: pd.DataFrame) -> np.ndarray:
    """Surprise's own predictions (clipped to the scale; unknown users or items get its fallback)."""
    testset = zip(frame["user_id"].tolist(), frame["item_id"].tolist(), frame["rating"].tolist())
    return np.array([p.est for p in algo.test(list(testset))], dtype=float)


def score_items(algo: AlgoBase, users: list[int], items: list[int]) -> np.ndarray:
    """Surprise's estimate (before clipping) of every (user, item) pair: (len(users), len(items)).

    Users and items are raw ids known to the model's trainset.
    """
    ts: Trainset = algo.trainset
    u = np.array([ts.to_inner_uid(x) for x in users])
    i = np.array([ts.to_inner_iid(x) for x in items])
    base = ts.global_mean + algo.bu[u][:, None] + algo.bi[i][None, :]
    if isinstance(algo, BaselineOnly):
        return base
    if isinstance(algo, SVDpp):
        implicit = _implicit_matrix(ts) @ algo.yj  # |N(u)|^-1/2 * sum of y_j over the user's items
        return base + (algo.pu[u] + implicit[u]) @ algo.qi[i].T
    if isinstance(algo, SVD):
        return base + algo.pu[u] @ algo.qi[i].T
    if isinstance(algo, KNNBaseline):
        return base + _knn_offsets(algo, u)[:, i]
    raise PipelineError(f"no vectorised scorer for {type(algo).__name__}")


def _implicit_matrix(ts: Trainset) -> sp.csr_matrix:
    rows, cols = [], []
    for u, rated in ts.ur.items():
        rows += [u] * len(rated)
        cols += [j for j, _ in rated]
    counts = np.bincount(rows, minlength=ts.n_users).astype(float)
    values = 1.0 / np.sqrt(counts[rows])
    return sp.csr_matrix((values, (rows, cols)), shape=(ts.n_users, ts.n_items))


def _knn_offsets(algo: KNNBaseline, users: np.ndarray) -> np.ndarray:
    """KNNBaseline's neighbour term for `users` (inner ids) and every item: (len(users), n_items).

    Surprise takes, among the users who rated item i, the k most similar to u, keeps those with a
    positive similarity, and adds sum(sim * (r - baseline)) / sum(sim) (0 below min_k neighbours). With the other users
    sorted by similarity to u, "the first k raters of i" is a cumulative count per item.
    """
    ts: Trainset = algo.trainset
    if not algo.sim_options.get("user_based", True):
        raise PipelineError("knn_baseline: vectorised scoring implements the default user-based similarity only")
    rated = np.zeros((ts.n_users, ts.n_items), dtype=bool)
    residual = np.zeros((ts.n_users, ts.n_items), dtype=np.float32)
    for v, items in ts.ur.items():
        j = np.array([x for x, _ in items])
        r = np.array([y for _, y in items])
        rated[v, j] = True
        residual[v, j] = r - (ts.global_mean + algo.bu[v] + algo.bi[j])
    out = np.zeros((len(users), ts.n_items))
    for row, u in enumerate(users):
        order = np.argsort(-algo.sim[u], kind="stable")
        sim = algo.sim[u, order]
        raters = rated[order]
        nearest = raters & (np.cumsum(raters, axis=0, dtype=np.int32) <= algo.k)
        weight = (
            nearest * np.maximum(sim, 0).astype(np.float32)[:, None]
        )  # non-positive neighbours count for k, add nothing
        total = weight.sum(axis=0)
        enough = total > 0
        if algo.min_k > 1:
            enough &= (nearest & (sim > 0)[:, None]).sum(axis=0) >= algo.min_k
        out[row] = np.divide(
            np.einsum("vi,vi->i", weight, residual[order]), total, out=np.zeros(ts.n_items, np.float32), where=enough
        )
    return out


def popularity(frame: pd.DataFrame) -> pd.DataFrame:
    """Items by number of training ratings: the non-personalised top-k baseline."""
    counts = frame["item_id"].value_counts()
    return pd.DataFrame({"item_id": counts.index.to_numpy(), "ratings": counts.to_numpy()})
