"""Metrics of a classifier's probabilities, binary or multi-class, shared by the classifying domains.

`proba` is always (n, k): one column per class, rows summing to 1 (binary: k = 2, class 1 is the
positive class). The decision for binary data is proba[:, 1] >= threshold; for k > 2, the argmax.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# Direction of every metric below, for the domains' MetricContract.
DIRECTIONS: dict[str, bool] = {
    "auroc": True,
    "accuracy": True,
    "f1": True,
    "sensitivity": True,
    "specificity": True,
    "log_loss": False,
    "ece": False,
    "fit_seconds": False,
    "predict_seconds": False,
}
RANGES = {m: (0.0, 1.0) for m in ("auroc", "accuracy", "f1", "sensitivity", "specificity", "ece")}
ECE_BINS = 15


def binary_proba(p_positive: np.ndarray) -> np.ndarray:
    """(n,) probabilities of the positive class as (n, 2)."""
    p = np.clip(np.asarray(p_positive, dtype=np.float64), 0.0, 1.0)
    return np.stack([1 - p, p], axis=1)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def decide(proba: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Predicted class per row: the positive class at or above `threshold` (binary), else the argmax."""
    return (proba[:, 1] >= threshold).astype(np.int64) if proba.shape[1] == 2 else proba.argmax(axis=1)


def auroc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary AUROC, or one-vs-rest macro AUROC (MedMNIST's protocol); NaN with a single class present."""
    from sklearn.metrics import roc_auc_score  # sklearn and pandas where used: domains read DIRECTIONS at every start

    if len(np.unique(y)) < 2:
        return float("nan")
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    present = np.unique(y)
    return float(np.mean([roc_auc_score(y == c, proba[:, c]) for c in present]))


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: |accuracy - confidence| per equal-width confidence bin, weighted by the bin's size."""
    table = reliability_table(y, proba, bins)
    return float((table["count"] * (table["accuracy"] - table["confidence"]).abs()).sum() / max(len(y), 1))


def reliability_table(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    """Per non-empty confidence bin: mean confidence of the predicted class, accuracy, count."""
    import pandas as pd

    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "confidence": confidence, "correct": correct})
    grouped = (
        frame.groupby("bin")
        .agg(confidence=("confidence", "mean"), accuracy=("correct", "mean"), count=("correct", "size"))
        .reset_index()
    )
    grouped["bin_low"], grouped["bin_high"] = edges[grouped["bin"]], edges[grouped["bin"] + 1]
    return grouped[["bin_low", "bin_high", "confidence", "accuracy", "count"]]


def classification_metrics(y: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """accuracy, f1 (binary: of the positive class; else macro), auroc, log_loss, ece; binary adds
    sensitivity and specificity. All at `threshold` where a threshold applies."""
    from sklearn.metrics import f1_score, log_loss

    y = np.asarray(y, dtype=np.int64)
    k = proba.shape[1]
    pred = decide(proba, threshold)
    metrics = {
        "accuracy": float(np.mean(pred == y)),
        "f1": float(f1_score(y, pred, average="binary" if k == 2 else "macro", zero_division=0)),
        "auroc": auroc(y, proba),
        "log_loss": float(log_loss(y, proba / proba.sum(axis=1, keepdims=True), labels=list(range(k)))),
        "ece": expected_calibration_error(y, proba),
    }
    if k == 2:
        positives, negatives = y == 1, y == 0
        metrics["sensitivity"] = float(np.mean(pred[positives] == 1)) if positives.any() else float("nan")
        metrics["specificity"] = float(np.mean(pred[negatives] == 0)) if negatives.any() else float("nan")
    return metrics


def youden_threshold(y: np.ndarray, p_positive: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (Youden's J), for choosing on validation."""
    from sklearn.metrics import roc_curve

    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y, p_positive)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def roc_rows(y: np.ndarray, probas: dict[str, np.ndarray], points: int = 200) -> pd.DataFrame:
    """ROC curve points per model (binary: the positive class; multi-class: micro-averaged), for DVC plots."""
    import pandas as pd

    rows = []
    for name, proba in probas.items():
        fpr, tpr = roc_points(y, proba)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(points, len(fpr))).astype(int))
        rows.append(pd.DataFrame({"model": name, "fpr": fpr[keep], "tpr": tpr[keep]}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["model", "fpr", "tpr"])


def roc_points(y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    if proba.shape[1] == 2:
        fpr, tpr, _ = roc_curve(y, proba[:, 1])
    else:  # micro average: every (item, class) pair is one binary decision
        onehot = np.eye(proba.shape[1], dtype=bool)[y]
        fpr, tpr, _ = roc_curve(onehot.ravel(), proba.ravel())
    return fpr, tpr
