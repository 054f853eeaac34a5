"""Bootstrap intervals over test units, vectorised with numpy.

A resample is a vector of counts, one per unit (card, user, document, image): how often the unit
is drawn. Rows inherit their unit's count as a weight, so one (b, n_units) count matrix scores b
resamples at once, and every model is scored on the same resamples: the difference of two models
on one count row is a paired bootstrap of their difference. Rank metrics sort the scores once; a
resample only changes the weights, so AUROC and average precision need one cumulative sum of the
weights in score order, read at the positives' tie groups (integer sums: exact). Means sum each
unit's rows first, so they cost a (b, n_units) product.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import TypeVar

import numpy as np

CONFIDENCE = 0.95
MAX_CELLS = 4_000_000  # counts gathered per chunk (b x rows): about 16 MB of int32, whatever the test size
WeightedMetric = Callable[[np.ndarray], np.ndarray]  # (b, n_units) unit counts -> (b,) metric values
K = TypeVar("K", bound=Hashable)


def resample_counts(n_units: int, n_resamples: int, seed: int, chunk: int) -> Iterator[np.ndarray]:
    """Counts of each unit in each resample, `chunk` resamples at a time; the same seed gives the same resamples."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        draws = rng.integers(0, n_units, size=(b, n_units)) + (np.arange(b) * n_units)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n_units).reshape(b, n_units).astype(np.int32)


def bootstrap(
    metrics: dict[K, WeightedMetric], n_units: int, n_rows: int, n_resamples: int, seed: int
) -> dict[K, np.ndarray]:
    """Each metric on the same `n_resamples` resamples of `n_units` units: name -> (n_resamples,) values."""
    chunk = max(1, MAX_CELLS // max(n_rows, n_units, 1))
    parts: dict[K, list[np.ndarray]] = {name: [] for name in metrics}
    for counts in resample_counts(n_units, n_resamples, seed, chunk):
        for name, metric in metrics.items():
            parts[name].append(metric(counts))
    _FLOAT[:] = [None, None]
    return {name: np.concatenate(values) if values else np.empty(0) for name, values in parts.items()}


def point(metric: WeightedMetric, n_units: int) -> float:
    """The metric on the test split itself: every unit once."""
    return float(metric(np.ones((1, n_units), dtype=np.int32))[0])


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


# --- weighted metrics: each takes the rows once (with each row's unit, 0..n_units-1) and returns a
# function of the (b, n_units) counts ---


def _per_unit(values: np.ndarray, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: the sum of its defined values and how many rows define one (NaN: undefined, left out)."""
    v = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(v)
    n_units = int(unit.max()) + 1 if len(unit) else 0
    return (
        np.bincount(unit, weights=np.where(defined, v, 0.0), minlength=n_units),
        np.bincount(unit, weights=defined.astype(np.float64), minlength=n_units),
    )


_FLOAT: list = [None, None]  # the last counts and their float copy: every mean metric of a chunk shares it


def _as_float(c: np.ndarray) -> np.ndarray:
    """The counts as float64, once per chunk (a float product runs in BLAS; an int one does not)."""
    if _FLOAT[0] is not c:
        _FLOAT[:] = [c, c.astype(np.float64)]
    return _FLOAT[1]


def weighted_mean(values: np.ndarray, unit: np.ndarray) -> WeightedMetric:
    """Mean of a per-row value; rows where it is undefined (NaN: a user with no relevant item) are left out."""
    both = np.column_stack(_per_unit(values, unit))

    def metric(c: np.ndarray) -> np.ndarray:
        sums = _as_float(c) @ both
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums[:, 0] / sums[:, 1]

    return metric


def weighted_rmse(squared_errors: np.ndarray, unit: np.ndarray, counts: np.ndarray | None = None) -> WeightedMetric:
    """sqrt(sum of squared errors / number of errors); a row may sum several (a user's ratings: `counts`)."""
    sse = np.asarray(squared_errors, dtype=np.float64)
    n = np.ones_like(sse) if counts is None else np.asarray(counts, dtype=np.float64)
    both = np.column_stack([_per_unit(sse, unit)[0], _per_unit(np.where(np.isfinite(sse), n, np.nan), unit)[0]])

    def metric(c: np.ndarray) -> np.ndarray:
        sums = _as_float(c) @ both
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(sums[:, 0] / sums[:, 1])

    return metric


class Ranked:
    """A model's rows in ascending score order, their tie groups and where the positives are: what both
    rank metrics read. The prefix sums of the last counts are kept, so AUROC and average precision of one
    model share them."""

    def __init__(self, y: np.ndarray, scores: np.ndarray, unit: np.ndarray) -> None:
        s = np.asarray(scores, dtype=np.float64)
        order = np.argsort(s, kind="stable")
        ordered = s[order]
        n = len(s)
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if n else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], n]
        group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
        self.unit = np.asarray(unit)[order]
        self.pos = np.flatnonzero(np.asarray(y)[order] == 1)  # positions of the positives, in score order
        self.start, self.end = starts[group[self.pos]], ends[group[self.pos]]  # each positive's tie group
        self.pos_start = np.searchsorted(self.pos, self.start)  # positives before the group
        self.pos_end = np.searchsorted(self.pos, self.end)  # positives up to the group's end
        self.n = n
        self._counts: np.ndarray | None = None
        self._prefix: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def prefix(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights of the rows before each position (b, n + 1), of the positives (b, P + 1), and each positive's."""
        if c is self._counts and self._prefix is not None:
            return self._prefix
        w = c[:, self.unit]
        total = np.zeros((len(c), self.n + 1), dtype=np.int64)
        np.cumsum(w, axis=1, out=total[:, 1:])
        own = w[:, self.pos]
        positives = np.zeros((len(c), len(self.pos) + 1), dtype=np.int64)
        np.cumsum(own, axis=1, out=positives[:, 1:])
        self._counts, self._prefix = c, (total, positives, own)
        return self._prefix


def weighted_auroc(y: np.ndarray, scores: np.ndarray, unit: np.ndarray, ranked: Ranked | None = None) -> WeightedMetric:
    """AUROC = P(score of a positive > score of a negative), ties counting half (sklearn's value at weight 1)."""
    r = ranked or Ranked(y, scores, unit)

    def metric(c: np.ndarray) -> np.ndarray:
        total, positives, own = r.prefix(c)
        below = total[:, r.start] - positives[:, r.pos_start]  # negatives strictly below each positive's group
        tied = (total[:, r.end] - total[:, r.start]) - (positives[:, r.pos_end] - positives[:, r.pos_start])
        n_pos = positives[:, -1]
        n_neg = total[:, -1] - n_pos
        with np.errstate(invalid="ignore", divide="ignore"):
            return (own * (below + 0.5 * tied)).sum(axis=1) / (n_pos.astype(np.float64) * n_neg)

    return metric


def weighted_average_precision(
    y: np.ndarray, scores: np.ndarray, unit: np.ndarray, ranked: Ranked | None = None
) -> WeightedMetric:
    """sum over thresholds of (recall step) x precision, thresholds at distinct scores (sklearn's definition)."""
    r = ranked or Ranked(y, scores, unit)

    def metric(c: np.ndarray) -> np.ndarray:
        total, positives, own = r.prefix(c)
        flagged = total[:, -1:] - total[:, r.start]  # rows scored at or above each positive's score
        hits = positives[:, -1:] - positives[:, r.pos_start]  # ... of them positive
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(flagged > 0, hits / flagged, 0.0)
            return (own * precision).sum(axis=1) / positives[:, -1]

    return metric


def weighted_macro_auroc(y: np.ndarray, proba: np.ndarray, unit: np.ndarray) -> WeightedMetric:
    """One-vs-rest macro AUROC over the classes present (classification.auroc's definition)."""
    parts = [weighted_auroc((np.asarray(y) == c).astype(int), proba[:, c], unit) for c in np.unique(y)]
    return lambda c: np.mean([part(c) for part in parts], axis=0)
