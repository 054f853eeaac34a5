"""Report figures every classifying domain draws the same way: ROC, reliability, confusion, training."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import confusion_matrix

from domains.common.classification import reliability_table, roc_points
from domains.common.contract import Figure


def roc_figure(
    y: np.ndarray, probas: dict[str, np.ndarray], caption: str = "All models on the same test split."
) -> Figure:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, proba in probas.items():
        fpr, tpr = roc_points(y, proba)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    multi = next(iter(probas.values())).shape[1] > 2 if probas else False
    ax.set(
        xlabel="false-positive rate",
        ylabel="true-positive rate",
        title="ROC" + (" (micro-averaged over classes)" if multi else ""),
    )
    ax.legend(fontsize=8)
    return Figure("ROC curves", fig, caption)


def reliability_figure(y: np.ndarray, probas: dict[str, np.ndarray]) -> Figure:
    """Accuracy against confidence per bin: on the diagonal, a model's probabilities can be taken at face value."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for name, proba in probas.items():
        table = reliability_table(y, proba)
        ax.plot(table["confidence"], table["accuracy"], "o-", ms=3, label=name)
    low = 1.0 / next(iter(probas.values())).shape[1] if probas else 0.5
    ax.set(
        xlabel="confidence (probability of the predicted class)",
        ylabel="accuracy",
        xlim=(low - 0.02, 1.01),
        title="Reliability diagram",
    )
    ax.legend(fontsize=8)
    return Figure("Reliability diagram", fig, "Points below the diagonal: over-confident; ece is the weighted gap.")


def confusion_figure(
    y: np.ndarray, pred: np.ndarray, class_names: Sequence[str], title: str, caption: str = ""
) -> Figure:
    k = len(class_names)
    matrix = confusion_matrix(y, pred, labels=list(range(k)))
    size = max(3.5, 0.5 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > matrix.max() / 2 else "black")
    ax.set(
        xticks=range(k),
        yticks=range(k),
        xticklabels=class_names,
        yticklabels=class_names,
        xlabel="predicted",
        ylabel="actual",
        title=title,
    )
    plt.setp(ax.get_xticklabels(), rotation=30 if k > 3 else 0, ha="right" if k > 3 else "center")
    return Figure(f"Confusion matrix ({title})", fig, caption)


def training_curve_figure(history: dict, score_label: str, model: str) -> Figure:
    """Train loss and the validation score per epoch of one `trainer.fit` history; the kept epoch dotted."""
    epochs = [e["epoch"] for e in history["epochs"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [e["train_loss"] for e in history["epochs"]], label="train loss")
    ax2 = ax.twinx()
    ax2.plot(epochs, [e["val_score"] for e in history["epochs"]], color="C1", label=score_label)
    ax.set(xlabel="epoch", ylabel="train loss", title=f"{model} training")
    ax2.set_ylabel(score_label)
    ax.axvline(history["best_epoch"], ls=":", color="grey")
    precision = history.get("precision", "float32")  # histories written before it was recorded: float32
    steps = f"{history['device']}" + (f", {precision} autocast" if precision != "float32" else ", float32")
    return Figure(
        f"{model} training curve", fig, f"Dotted line: the epoch kept (best {score_label}). Trained on {steps}."
    )
