"""Recommender metrics over plain arrays: rating errors and top-k ranking quality."""

from __future__ import annotations

import numpy as np

K = 10  # the metrics' cut-off: precision@10, recall@10, NDCG@10, MAP@10

# Every metric the domain reports, with its direction (the MetricContract's higher_is_better).
DIRECTIONS: dict[str, bool] = {
    "rmse": False,
    "mae": False,
    f"precision_at_{K}": True,
    f"recall_at_{K}": True,
    f"ndcg_at_{K}": True,
    f"map_at_{K}": True,
    "coverage": True,
    "novelty": True,  # mean self-information of the recommended items: higher, further into the long tail
    "ndcg_over_popularity": True,  # NDCG@10 / the popularity ranking's: above 1, better than a bestseller list
    "fit_seconds": False,
    "predict_seconds": False,
}
RANGES = {m: (0.0, 1.0) for m in (f"precision_at_{K}", f"recall_at_{K}", f"ndcg_at_{K}", f"map_at_{K}", "coverage")}
ACCURACY = tuple(m for m in DIRECTIONS if not m.endswith("_seconds"))  # reproducible for a seed; times are not


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, float) - np.asarray(pred, float)) ** 2)))


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(pred, float))))


def top_k(scores: np.ndarray, seen: np.ndarray, k: int = K) -> np.ndarray:
    """Column indices of the k best unseen items per row, best first; ties go to the lower index."""
    masked = np.where(seen, -np.inf, scores)
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]


def ranking_metrics(recommended: np.ndarray, relevant: list[set], catalogue: int) -> dict[str, float]:
    """precision, recall, NDCG and MAP at k (mean over users with a relevant item) and catalogue coverage.

    `recommended`: (users, k) item ids, best first; `relevant`: per user, the held-out items that
    count as hits; `catalogue`: the number of items that could have been recommended.
    """
    per_user = per_user_ranking(recommended, relevant)
    return {
        **{
            name: float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            for name, values in per_user.items()
        },
        "coverage": len(np.unique(recommended)) / catalogue if catalogue else float("nan"),
    }


def per_user_ranking(recommended: np.ndarray, relevant: list[set]) -> dict[str, np.ndarray]:
    """precision, recall, NDCG and MAP at k of each user; NaN for users without a relevant item."""
    k = recommended.shape[1]
    hits = np.array([[item in rel for item in row] for row, rel in zip(recommended, relevant)], dtype=float).reshape(
        -1, k
    )
    n_rel = np.array([len(r) for r in relevant], dtype=float)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.array([discount[: int(min(n, k))].sum() for n in n_rel])
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = {
            f"precision_at_{k}": hits.sum(axis=1) / k,
            f"recall_at_{k}": hits.sum(axis=1) / n_rel,
            f"ndcg_at_{k}": (hits @ discount) / ideal,
            f"map_at_{k}": (precision_at * hits).sum(axis=1) / np.minimum(n_rel, k),
        }
    return {name: np.where(n_rel > 0, v, np.nan) for name, v in values.items()}


def novelty(recommended: np.ndarray, counts: dict, n_users: int) -> float:
    """Mean of -log2(share of users who interacted with the item) over every recommended item."""
    shares = np.array([max(counts.get(item, 0), 1) for item in recommended.ravel()], dtype=float) / max(n_users, 1)
    return float(np.mean(-np.log2(shares))) if len(shares) else float("nan")
