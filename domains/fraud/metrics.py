"""Fraud-detection metrics over plain arrays: threshold-free ones and the handbook's card precision@k."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from domains.common.errors import PipelineError


def card_precision_at_k(days: np.ndarray, customer_ids: np.ndarray, y: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Mean over days of the fraction of frauds among the k highest-scored cards of the day.

    The fraud-detection handbook's definition: a card's score on a day is the max over its
    transactions, and it is fraudulent if any of them is; a card found on one day (a fraud among
    that day's top k) is left out of the following days, as it would be blocked; days with fewer
    than k cards still divide by k. Equal scores are broken by card id, so row order does not matter.
    """
    frame = pd.DataFrame(
        {
            "day": np.asarray(days),
            "card": np.asarray(customer_ids),
            "y": np.asarray(y).astype(np.int64),
            "score": np.asarray(scores, dtype=float),
        }
    )
    if frame.empty:
        return float("nan")
    cards = frame.groupby(["day", "card"], dropna=False).agg(score=("score", "max"), y=("y", "max")).reset_index()
    found: set = set()
    daily = []
    for _, today in cards.groupby("day", sort=True, dropna=False):
        today = today[~today["card"].isin(found)]
        top = today.sort_values(["score", "card"], ascending=[False, True], kind="stable").head(k)
        hits = top.loc[top["y"] == 1, "card"]
        daily.append(len(hits) / k)
        found.update(hits)
    return float(np.mean(daily))


def recall_at_fpr(y: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """Recall at the most permissive threshold whose false-positive rate is still <= fpr."""
    fprs, tprs, _ = roc_curve(y, scores, drop_intermediate=False)  # every threshold: none skipped
    ok = fprs <= fpr  # fprs[0] == 0, so empty only when y has a single class (fprs are NaN)
    return float(tprs[ok].max()) if ok.any() else float("nan")


def score_metrics(
    y: np.ndarray, scores: np.ndarray, days: np.ndarray, customer_ids: np.ndarray | None, k: int, fpr: float
) -> dict[str, float]:
    """auroc, average_precision, card_precision_at_k and recall_at_fpr of one model's scores.

    Without customer ids (ULB data) each transaction counts as its own card, so
    card_precision_at_k becomes the daily precision of the k highest-scored transactions.
    """
    y = np.asarray(y).astype(np.int64)
    scores = np.asarray(scores, dtype=float)
    n_fraud = int(y.sum())
    if n_fraud == 0 or n_fraud == len(y):
        raise PipelineError(
            f"score_metrics: {len(y)} rows with {n_fraud} fraud(s); "
            "AUROC and average precision need both frauds and legitimate transactions"
        )
    cards = np.arange(len(y)) if customer_ids is None else customer_ids
    return {
        "auroc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
        "card_precision_at_k": card_precision_at_k(days, cards, y, scores, k),
        "recall_at_fpr": recall_at_fpr(y, scores, fpr),
    }
