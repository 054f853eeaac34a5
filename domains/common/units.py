"""Per-unit predictions on the test split, and what is computed from them: intervals, the paired
comparison with the champion, and slices.

A domain's evaluate returns one row per test row (`Evaluation.units`, saved as
`evaluate/predictions.parquet`):

    row               the row's id (transaction, document, image, rating); with `unit` and `label`, hashed
                      into the split's identity
    unit              the bootstrap unit the row belongs to (card, user, document, image)
    label             the true class (classification domains)
    <model>:p1        binary: the positive class's probability or score
    <model>:p<k>      several classes: each class's probability
    <model>:<value>   a per-row value that a metric averages (recsys: a user's ndcg_at_10)
    slice:<column>    what slices are cut on (amount, hour, document length, brightness, ...)

A metric's kind says how it is computed from these columns (MetricContract.intervals):
`auroc`, `average_precision`, `accuracy` (threshold 0.5 or argmax), `mean:<value>`, `rmse:<value>`
(the square root of the mean of a per-row squared error).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from domains.common import bootstrap as bs

PREDICTIONS_FILE = "predictions.parquet"
SLICE_PREFIX = "slice:"


def kind_range(kind: str) -> tuple[float, float]:
    """The values a metric of this kind can take: every kind but rmse is a share or a mean of shares."""
    return (0.0, float("inf")) if kind.startswith("rmse") else (0.0, 1.0)


def models_in(frame: pd.DataFrame) -> list[str]:
    return sorted({c.split(":", 1)[0] for c in frame.columns if ":" in c and not c.startswith(SLICE_PREFIX)})


def _proba(frame: pd.DataFrame, model: str) -> np.ndarray | None:
    """(n, k) class probabilities of `model`, (n, 2) for a binary score column; None when absent."""
    if f"{model}:p1" in frame and f"{model}:p2" not in frame:
        p1 = frame[f"{model}:p1"].to_numpy(np.float64)
        return np.stack([1 - p1, p1], axis=1)
    columns = sorted((c for c in frame.columns if c.startswith(f"{model}:p") and c[len(model) + 2:].isdigit()),
                     key=lambda c: int(c[len(model) + 2:]))
    return frame[columns].to_numpy(np.float64) if columns else None


def weighted_metric(frame: pd.DataFrame, model: str, kind: str) -> bs.WeightedMetric | None:
    """The metric of `kind` for `model`'s columns as a function of row weights; None when the columns are absent."""
    name, _, value = kind.partition(":")
    if name in ("mean", "rmse"):
        column = f"{model}:{value}"
        if column not in frame:
            return None
        return (bs.weighted_mean if name == "mean" else bs.weighted_rmse)(frame[column].to_numpy(np.float64))
    proba = _proba(frame, model)
    if proba is None or "label" not in frame:
        return None
    y = frame["label"].to_numpy(np.int64)
    if name == "auroc":
        return bs.weighted_auroc(y, proba[:, 1]) if proba.shape[1] == 2 else bs.weighted_macro_auroc(y, proba)
    if name == "average_precision":
        return bs.weighted_average_precision(y, proba[:, 1])
    if name == "accuracy":
        pred = (proba[:, 1] >= 0.5).astype(np.int64) if proba.shape[1] == 2 else proba.argmax(axis=1)
        return bs.weighted_mean((pred == y).astype(np.float64))
    raise ValueError(f"unknown metric kind '{kind}'")


def split_hash(frame: pd.DataFrame) -> str:
    """The test split's identity: its rows, their units and labels, in order."""
    keys = frame[[c for c in ("row", "unit", "label") if c in frame]].astype(str)
    return hashlib.sha256(pd.util.hash_pandas_object(keys, index=False).to_numpy().tobytes()).hexdigest()[:16]


def intervals(frame: pd.DataFrame, kinds: dict[str, str], n_resamples: int, seed: int,
              confidence: float = bs.CONFIDENCE) -> dict[str, dict[str, tuple[float, float]]]:
    """model -> metric -> (low, high), every model on the same resamples of the units."""
    metrics = {(m, metric): f for m in models_in(frame) for metric, kind in kinds.items()
               if (f := weighted_metric(frame, m, kind)) is not None}
    samples = bs.bootstrap(metrics, bs.dense_units(frame["unit"]), n_resamples, seed)
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for (model, metric), values in samples.items():
        out.setdefault(model, {})[metric] = bs.interval(values, confidence)
    return out


@dataclass(frozen=True)
class Paired:
    """Challenger minus champion on the same units, signed so that positive is better."""

    metric: str
    difference: float
    low: float
    high: float
    units: int
    resamples: int
    rescored: bool  # the champion was re-scored on this split (its own predictions were on another)

    def describe(self) -> str:
        return (f"{self.metric} {self.difference:+.4f} [95% CI {self.low:+.4f}, {self.high:+.4f}] "
                f"(paired bootstrap over {self.units} units{', champion re-scored on this split' if self.rescored else ''})")


def paired(frame: pd.DataFrame, candidate: str, champion: pd.DataFrame, champion_model: str, metric: str, kind: str,
           higher_is_better: bool, n_resamples: int, seed: int, rescored: bool = False) -> Paired:
    """Paired bootstrap of candidate - champion on `frame`'s units; `champion` holds the champion's columns, same rows."""
    if len(champion) != len(frame):
        raise ValueError(f"the champion's predictions have {len(champion)} rows, this split {len(frame)}")
    joined = frame[[c for c in frame.columns if not c.startswith(f"champion{':'}")]].copy()
    for column in (c for c in champion.columns if c.startswith(f"{champion_model}:")):
        joined["champion:" + column.split(":", 1)[1]] = champion[column].to_numpy()
    ours, theirs = weighted_metric(joined, candidate, kind), weighted_metric(joined, "champion", kind)
    if ours is None or theirs is None:
        raise ValueError(f"no {metric} columns for {candidate if ours is None else 'the champion ' + champion_model}")
    sign = 1.0 if higher_is_better else -1.0
    ones = np.ones((1, len(joined)), dtype=np.float32)
    point = float(sign * (ours(ones) - theirs(ones))[0])
    units = bs.dense_units(joined["unit"])
    samples = bs.bootstrap({"d": lambda w: sign * (ours(w) - theirs(w))}, units, n_resamples, seed)["d"]
    low, high = bs.interval(samples)
    return Paired(metric, point, low, high, int(units.max()) + 1, n_resamples, rescored)
