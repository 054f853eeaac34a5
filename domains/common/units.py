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
    <model>:<value>   a per-row value that a metric averages (recsys: a user's ndcg_at_10; NaN: not defined)
    weight            rmse only: how many errors a row's squared-error sum holds (recsys: the user's ratings)
    slice:<column>    what slices are cut on (amount, hour, document length, brightness, ...)

A metric's kind says how it is computed from these columns (MetricContract.intervals):
`auroc`, `average_precision`, `accuracy` (threshold 0.5 or argmax), `mean:<value>`, `rmse:<value>`
(the square root of the summed squared errors over the number of errors, `weight`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from domains.common import bootstrap as bs

PREDICTIONS_FILE = "predictions.parquet"
SLICE_PREFIX = "slice:"


def models_in(frame: pd.DataFrame) -> list[str]:
    return sorted({c.split(":", 1)[0] for c in frame.columns if ":" in c and not c.startswith(SLICE_PREFIX)})


def _proba(frame: pd.DataFrame, model: str) -> np.ndarray | None:
    """(n, k) class probabilities of `model`, (n, 2) for a binary score column; None when absent."""
    if f"{model}:p1" in frame and f"{model}:p2" not in frame:
        p1 = frame[f"{model}:p1"].to_numpy(np.float64)
        return np.stack([1 - p1, p1], axis=1)
    columns = sorted(
        (c for c in frame.columns if c.startswith(f"{model}:p") and c[len(model) + 2 :].isdigit()),
        key=lambda c: int(c[len(model) + 2 :]),
    )
    return frame[columns].to_numpy(np.float64) if columns else None


def weighted_metric(
    frame: pd.DataFrame,
    model: str,
    kind: str,
    unit: np.ndarray | None = None,
    ranked: dict[str, bs.Ranked] | None = None,
) -> bs.WeightedMetric | None:
    """The metric of `kind` for `model`'s columns as a function of unit counts; None when the columns are absent.

    `unit`: each row's unit as 0..n_units-1 (default: from the frame's `unit` column); `ranked`: a cache
    of each model's score order, shared by its rank metrics.
    """
    unit = bs.dense_units(frame["unit"]) if unit is None else unit
    name, _, value = kind.partition(":")
    if name in ("mean", "rmse"):
        column = f"{model}:{value}"
        if column not in frame:
            return None
        if name == "mean":
            return bs.weighted_mean(frame[column].to_numpy(np.float64), unit)
        return bs.weighted_rmse(
            frame[column].to_numpy(np.float64), unit, frame["weight"].to_numpy() if "weight" in frame else None
        )
    proba = _proba(frame, model)
    if proba is None or "label" not in frame:
        return None
    y = frame["label"].to_numpy(np.int64)
    if proba.shape[1] > 2 and name == "auroc":
        return bs.weighted_macro_auroc(y, proba, unit)
    if name in ("auroc", "average_precision"):
        cache = {} if ranked is None else ranked
        order = cache.get(model) or cache.setdefault(model, bs.Ranked(y, proba[:, 1], unit))
        fn = bs.weighted_auroc if name == "auroc" else bs.weighted_average_precision
        return fn(y, proba[:, 1], unit, order)
    if name == "accuracy":
        pred = (proba[:, 1] >= 0.5).astype(np.int64) if proba.shape[1] == 2 else proba.argmax(axis=1)
        return bs.weighted_mean((pred == y).astype(np.float64), unit)
    raise ValueError(f"unknown metric kind '{kind}'")


def split_hash(frame: pd.DataFrame) -> str:
    """The test split's identity: its rows, their units and labels, in order."""
    keys = frame[[c for c in ("row", "unit", "label") if c in frame]].astype(str)
    return hashlib.sha256(pd.util.hash_pandas_object(keys, index=False).to_numpy().tobytes()).hexdigest()[:16]


def intervals(
    frame: pd.DataFrame, kinds: dict[str, str], n_resamples: int, seed: int, confidence: float = bs.CONFIDENCE
) -> dict[str, dict[str, tuple[float, float]]]:
    """model -> metric -> (low, high), every model on the same resamples of the units."""
    unit = bs.dense_units(frame["unit"])
    ranked: dict[str, bs.Ranked] = {}
    metrics = {
        (m, metric): f
        for m in models_in(frame)
        for metric, kind in kinds.items()
        if (f := weighted_metric(frame, m, kind, unit, ranked)) is not None
    }
    samples = bs.bootstrap(metrics, int(unit.max()) + 1 if len(unit) else 0, len(frame), n_resamples, seed)
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
        return (
            f"{self.metric} {self.difference:+.4f} [95% CI {self.low:+.4f}, {self.high:+.4f}] "
            f"(paired bootstrap over {self.units} units{', champion re-scored on this split' if self.rescored else ''})"
        )


def paired(
    frame: pd.DataFrame,
    candidate: str,
    champion: pd.DataFrame,
    champion_model: str,
    metric: str,
    kind: str,
    higher_is_better: bool,
    n_resamples: int,
    seed: int,
    rescored: bool = False,
) -> Paired:
    """Paired bootstrap of candidate - champion on `frame`'s units; `champion` holds the champion's columns, same rows."""
    if len(champion) != len(frame):
        raise ValueError(f"the champion's predictions have {len(champion)} rows, this split {len(frame)}")
    joined = frame[[c for c in frame.columns if not c.startswith(f"champion{':'}")]].copy()
    for column in (c for c in champion.columns if c.startswith(f"{champion_model}:")):
        joined["champion:" + column.split(":", 1)[1]] = champion[column].to_numpy()
    unit = bs.dense_units(joined["unit"])
    ours, theirs = weighted_metric(joined, candidate, kind, unit), weighted_metric(joined, "champion", kind, unit)
    if ours is None or theirs is None:
        raise ValueError(f"no {metric} columns for {candidate if ours is None else 'the champion ' + champion_model}")
    sign = 1.0 if higher_is_better else -1.0
    n_units = int(unit.max()) + 1
    difference = lambda c: sign * (ours(c) - theirs(c))  # noqa: E731
    samples = bs.bootstrap({"d": difference}, n_units, len(joined), n_resamples, seed)["d"]
    low, high = bs.interval(samples)
    return Paired(metric, bs.point(difference, n_units), low, high, n_units, n_resamples, rescored)


def bands(values: pd.Series, edges: list[float] | None) -> pd.Series:
    """Each row's group: its band between consecutive `edges` ('< 50', '50-200', '>= 200'), else its own value."""
    if edges is None:
        return values.astype(str).where(values.notna(), "n/a")
    edges = sorted(edges)

    def fmt(x: float) -> str:
        return f"{x:g}"

    labels = [f"< {fmt(edges[0])}", *(f"{fmt(a)}-{fmt(b)}" for a, b in zip(edges, edges[1:])), f">= {fmt(edges[-1])}"]
    which = np.searchsorted(np.asarray(edges, dtype=float), values.to_numpy(np.float64), side="right")
    return pd.Series(np.where(values.isna(), "n/a", np.asarray(labels, dtype=object)[which]), index=values.index)


@dataclass(frozen=True)
class SliceSpec:
    name: str
    column: str  # a `slice:<column>` of the predictions
    bins: list[float] | None
    protected: bool
    metric: str  # the metric computed on each group
    kind: str  # how (MetricContract.intervals)
    reference: str | None = None  # a value whose rows join every group (and is no group): each type vs the good images


def slice_table(
    frame: pd.DataFrame, slices: list[SliceSpec], candidate: str, min_units: int, n_resamples: int, seed: int
) -> pd.DataFrame:
    """One row per (slice, group, model): the metric on the group's rows; the candidate's with its interval.

    Groups with fewer than `min_units` units are listed but not judged (status says why).
    """
    rows = []
    for spec in slices:
        groups = bands(frame[SLICE_PREFIX + spec.column], spec.bins)
        values = frame[SLICE_PREFIX + spec.column]
        order = (
            values.groupby(groups).min().sort_values().index
            if spec.bins is not None  # bands low to high
            else sorted(groups.unique())
        )
        reference = (groups == spec.reference).to_numpy() if spec.reference is not None else np.zeros(len(frame), bool)
        for group in (g for g in order if g != spec.reference):
            members = (groups == group).to_numpy()
            part = frame[members | reference].reset_index(drop=True)
            n_units = int(frame.loc[members, "unit"].nunique())  # the group's own units decide its size
            unit = bs.dense_units(part["unit"])
            for model in models_in(part):
                metric = weighted_metric(part, model, spec.kind, unit)
                if metric is None:
                    continue
                value = bs.point(metric, int(unit.max()) + 1)
                low = high = float("nan")
                status = "ok" if np.isfinite(value) else "undefined (one class only)"
                if n_units < min_units:
                    status = f"too small ({n_units} < {min_units} units)"
                elif model == candidate and np.isfinite(value):
                    low, high = bs.interval(
                        bs.bootstrap({"m": metric}, int(unit.max()) + 1, len(part), n_resamples, seed)["m"]
                    )
                rows.append(
                    {
                        "slice": spec.name,
                        "group": group,
                        "metric": spec.metric,
                        "model": model,
                        "units": n_units,
                        "rows": len(part),
                        "value": value,
                        "ci_low": low,
                        "ci_high": high,
                        "status": status,
                        "protected": spec.protected,
                    }
                )
    return pd.DataFrame(
        rows,
        columns=[
            "slice",
            "group",
            "metric",
            "model",
            "units",
            "rows",
            "value",
            "ci_low",
            "ci_high",
            "status",
            "protected",
        ],
    )


def worst_slice(table: pd.DataFrame, candidate: str, metric: str, higher_is_better: bool) -> dict | None:
    """The candidate's worst judged group on `metric`, or None when no group could be judged."""
    judged = table[(table["model"] == candidate) & (table["status"] == "ok") & (table["metric"] == metric)]
    if judged.empty:
        return None
    row = judged.loc[judged["value"].idxmin() if higher_is_better else judged["value"].idxmax()]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def protected_gaps(table: pd.DataFrame, candidate: str) -> list[dict]:
    """Per protected slice: the candidate's best and worst judged group and the gap between them."""
    out = []
    judged = table[(table["model"] == candidate) & (table["status"] == "ok") & table["protected"]]
    for name, part in judged.groupby("slice", sort=False):
        if len(part) < 2:
            continue
        best, worst = part.loc[part["value"].idxmax()], part.loc[part["value"].idxmin()]
        out.append(
            {
                "slice": name,
                "best": best["group"],
                "best_value": float(best["value"]),
                "worst": worst["group"],
                "worst_value": float(worst["value"]),
                "gap": float(best["value"] - worst["value"]),
            }
        )
    return out
