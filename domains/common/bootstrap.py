"""Bootstrap intervals over test units, vectorised with numpy.

A resample is a vector of counts, one per unit (card, user, document, image): how often the unit
is drawn. Rows inherit their unit's count as a weight, so one (b, n_rows) weight matrix scores b
resamples at once, and every model is scored on the same resamples: the difference of two models
on one weight row is a paired bootstrap of their difference. Rank metrics sort the scores once;
a resample only changes the weights, so AUROC and average precision are sums over tie groups.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

CONFIDENCE = 0.95
MAX_CELLS = 4_000_000  # weights per chunk (b x rows): about 16 MB of float32, whatever the test size
WeightedMetric = Callable[[np.ndarray], np.ndarray]  # (b, n) row weights -> (b,) metric values


def resample_counts(n_units: int, n_resamples: int, seed: int, chunk: int) -> Iterator[np.ndarray]:
    """Counts of each unit in each resample, `chunk` resamples at a time; the same seed gives the same resamples."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        draws = rng.integers(0, n_units, size=(b, n_units)) + (np.arange(b) * n_units)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n_units).reshape(b, n_units).astype(np.float32)


def bootstrap(metrics: dict[str, WeightedMetric], unit_of_row: np.ndarray, n_resamples: int, seed: int) -> dict[str, np.ndarray]:
    """Each metric on the same `n_resamples` resamples of the units: name -> (n_resamples,) values.

    `unit_of_row`: the unit index (0..n_units-1) of each row; rows of one unit are drawn together.
    """
    unit_of_row = np.asarray(unit_of_row)
    n_units = int(unit_of_row.max()) + 1 if len(unit_of_row) else 0
    chunk = max(1, MAX_CELLS // max(len(unit_of_row), n_units, 1))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in metrics}
    for counts in resample_counts(n_units, n_resamples, seed, chunk):
        weights = counts[:, unit_of_row]
        for name, metric in metrics.items():
            parts[name].append(metric(weights))
    return {name: np.concatenate(values) if values else np.empty(0) for name, values in parts.items()}


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of bootstrap samples (resamples where the metric is undefined are left out)."""
    finite = samples[np.isfinite(samples)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def dense_units(units: np.ndarray) -> np.ndarray:
    """Any unit ids (card ids, user ids, strings) -> 0..n_units-1."""
    return np.unique(np.asarray(units), return_inverse=True)[1].ravel()


# --- weighted metrics: each takes the data once and returns a function of the (b, n) weights ---


def weighted_mean(values: np.ndarray) -> WeightedMetric:
    """Mean of a per-row value; rows where it is undefined (NaN: a user with no relevant item) are left out."""
    v = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(v)
    v0 = np.where(defined, v, 0.0)

    def metric(w: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ v0) / (w @ defined.astype(np.float64))

    return metric


def weighted_rmse(squared_errors: np.ndarray, counts: np.ndarray | None = None) -> WeightedMetric:
    """sqrt(sum of squared errors / number of errors); a row may sum several (a user's ratings: `counts`)."""
    sse = np.asarray(squared_errors, dtype=np.float64)
    n = np.ones_like(sse) if counts is None else np.asarray(counts, dtype=np.float64)
    defined = np.isfinite(sse)
    sse0, n0 = np.where(defined, sse, 0.0), np.where(defined, n, 0.0)

    def metric(w: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt((w @ sse0) / (w @ n0))

    return metric


def _tie_groups(sorted_scores: np.ndarray) -> np.ndarray:
    """Start index of each run of equal scores in a sorted array."""
    if len(sorted_scores) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])


def weighted_auroc(y: np.ndarray, scores: np.ndarray) -> WeightedMetric:
    """AUROC = P(score of a positive > score of a negative), ties counting half (sklearn's value at weight 1)."""
    order = np.argsort(scores, kind="stable")
    pos = (np.asarray(y)[order] == 1).astype(np.float32)
    starts = _tie_groups(np.asarray(scores)[order])

    def metric(w: np.ndarray) -> np.ndarray:
        ws = w[:, order]
        pos_g = np.add.reduceat(ws * pos, starts, axis=1)
        neg_g = np.add.reduceat(ws, starts, axis=1) - pos_g
        below = np.cumsum(neg_g, axis=1) - neg_g  # negatives strictly below each tie group
        n_pos, n_neg = pos_g.sum(axis=1), neg_g.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (pos_g * (below + 0.5 * neg_g)).sum(axis=1) / (n_pos * n_neg)

    return metric


def weighted_average_precision(y: np.ndarray, scores: np.ndarray) -> WeightedMetric:
    """sum over thresholds of (recall step) x precision, thresholds at distinct scores (sklearn's definition)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    pos = (np.asarray(y)[order] == 1).astype(np.float32)
    starts = _tie_groups(np.asarray(scores)[order])

    def metric(w: np.ndarray) -> np.ndarray:
        ws = w[:, order].astype(np.float64)  # cumulative sums over 10^5 rows: float32 would drift
        tp_g = np.add.reduceat(ws * pos, starts, axis=1)
        all_g = np.add.reduceat(ws, starts, axis=1)
        tp, total = np.cumsum(tp_g, axis=1), np.cumsum(all_g, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(total > 0, tp / total, 0.0)
            return (tp_g * precision).sum(axis=1) / tp[:, -1]

    return metric


def weighted_macro_auroc(y: np.ndarray, proba: np.ndarray) -> WeightedMetric:
    """One-vs-rest macro AUROC over the classes present (classification.auroc's definition)."""
    parts = [weighted_auroc((np.asarray(y) == c).astype(int), proba[:, c]) for c in np.unique(y)]
    return lambda w: np.mean([part(w) for part in parts], axis=0)
