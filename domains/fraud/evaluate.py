"""Score every fraud model on the test period; curves, score distributions, confusion matrix, importance."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import precision_recall_curve, roc_curve

from domains.common.contract import Evaluation, Figure
from domains.common.figures import confusion_figure, training_curve_figure
from domains.fraud.metrics import score_metrics
from domains.fraud.params import FraudParams
from domains.fraud.train import MODELS, load_split, score_all

CURVE_POINTS = 200  # enough for a smooth curve, small enough for DVC plots


def evaluate_models(p: FraudParams, prepared_dir: Path, train_dir: Path, out_dir: Path) -> Evaluation:
    frame, names = load_split(prepared_dir)
    test = frame[frame["split"] == "test"]
    x, y = test[names].to_numpy(np.float32), test["label"].to_numpy()
    days = test["day"].to_numpy()
    cards = test["card_id"].to_numpy() if "card_id" in test else None
    scores = score_all(train_dir, x)
    s = p.evaluate
    metrics = {name: score_metrics(y, scores[name], days, cards, s.top_k, s.fpr) for name in MODELS}
    history = json.loads((train_dir / "history.json").read_text())
    candidate = p.evaluate.candidate

    plots = {"pr_curve": _curve_rows(y, scores, "pr"), "roc_curve": _curve_rows(y, scores, "roc")}
    importance = _importance(train_dir, test[names], y, names, p.seed)
    figures = [
        _curves_figure(y, scores),
        _score_distribution(y, scores[candidate], candidate),
        confusion_figure(
            y,
            (scores[candidate] >= s.decision_threshold).astype(int),
            ["legit", "fraud"],
            f"{candidate} at threshold {s.decision_threshold}",
            f"Score >= {s.decision_threshold} flags a transaction.",
        ),
        _importance_figure(importance),
        training_curve_figure(history, "val average precision", "MLP"),
    ]
    n_days = len(np.unique(days))
    notes = [
        f"Test period: {n_days} days, {len(y)} transactions, {int(y.sum())} frauds ({y.mean():.2%}). "
        f"card_precision_at_k uses k={s.top_k} cards per day; recall_at_fpr is recall at FPR <= {s.fpr:.2%}.",
        f"MLP: best epoch {history['best_epoch']} of {len(history['epochs'])} on {history['device']}"
        f"{' (stopped early)' if history['stopped_early'] else ''}.",
    ]
    return Evaluation(
        metrics=metrics,
        plots=plots,
        figures=figures,
        tables={"feature_importance": importance},
        notes=notes,
        units=test_units(test, scores),
    )


def test_units(test: pd.DataFrame, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-transaction predictions; the bootstrap unit is the card (its transactions are not independent),
    each transaction without card ids (ULB)."""
    frame = pd.DataFrame(
        {
            "row": test["transaction_id"].to_numpy(),
            "unit": test["card_id"].to_numpy() if "card_id" in test else test["transaction_id"].to_numpy(),
            "label": test["label"].to_numpy(np.int64),
        }
    )
    for name, score in scores.items():
        frame[f"{name}:p1"] = np.asarray(score, dtype=np.float64)
    frame["slice:amount"] = test["tx_amount"].to_numpy(np.float64)
    history = sorted((c for c in test.columns if c.startswith("customer_nb_tx_")), key=lambda c: int(c[15:-1]))
    if history:  # the card's transactions in the longest customer window, the current one included
        frame["slice:history"] = test[history[-1]].to_numpy(np.float64)
    if "hour" in test:
        frame["slice:hour"] = test["hour"].to_numpy(np.int64)
    return frame


def _curve_rows(y: np.ndarray, scores: dict[str, np.ndarray], kind: str) -> pd.DataFrame:
    rows = []
    for name, score in scores.items():
        if kind == "pr":
            precision, recall, _ = precision_recall_curve(y, score)
            xs, ys, cols = recall, precision, ("recall", "precision")
        else:
            fpr, tpr, _ = roc_curve(y, score)
            xs, ys, cols = fpr, tpr, ("fpr", "tpr")
        keep = np.unique(np.linspace(0, len(xs) - 1, min(CURVE_POINTS, len(xs))).astype(int))
        rows.append(pd.DataFrame({"model": name, cols[0]: xs[keep], cols[1]: ys[keep]}))
    return pd.concat(rows, ignore_index=True)


def _curves_figure(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    fig, (ax_pr, ax_roc) = plt.subplots(1, 2, figsize=(10, 4))
    for name, score in scores.items():
        precision, recall, _ = precision_recall_curve(y, score)
        fpr, tpr, _ = roc_curve(y, score)
        ax_pr.plot(recall, precision, label=name)
        ax_roc.plot(fpr, tpr, label=name)
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax_roc.plot([0, 1], [0, 1], ":", color="grey")
    ax_roc.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    ax_pr.legend()
    return Figure("PR and ROC curves", fig, "All models on the same test period.")


def _score_distribution(y: np.ndarray, score: np.ndarray, name: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 41).tolist()
    ax.hist(score[y == 0], bins=bins, alpha=0.6, density=True, label="legitimate")
    ax.hist(score[y == 1], bins=bins, alpha=0.6, density=True, label="fraud")
    ax.set(xlabel="score", ylabel="density", yscale="log", title=f"Score distribution by class ({name})")
    ax.legend()
    return Figure(f"Score distribution ({name})", fig, "Density per class, log scale.")


def _importance(train_dir: Path, x: pd.DataFrame, y: np.ndarray, names: list[str], seed: int) -> pd.DataFrame:
    """Permutation importance of the gradient-boosting baseline (drop in average precision)."""
    import joblib

    sample = np.random.default_rng(seed).permutation(len(x))[:20_000]
    model = joblib.load(train_dir / "hgb.joblib")
    result = permutation_importance(
        model, x.to_numpy(np.float32)[sample], y[sample], scoring="average_precision", n_repeats=3, random_state=seed
    )
    return pd.DataFrame(
        {"feature": names, "importance": result.importances_mean, "std": result.importances_std}
    ).sort_values("importance", ascending=False, ignore_index=True)


def _importance_figure(importance: pd.DataFrame) -> Figure:
    top = importance.head(15).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.barh(top["feature"], top["importance"], xerr=top["std"])
    ax.set(xlabel="drop in average precision when shuffled", title="Feature importance (hgb)")
    return Figure("Feature importance", fig, "Permutation importance on up to 20,000 test rows.")
