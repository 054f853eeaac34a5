"""Metrics on examples small enough to compute by hand."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from domains.common.errors import PipelineError
from domains.fraud.metrics import card_precision_at_k, recall_at_fpr, score_metrics

# Day 1: card A (max .9, one fraud), B (.8, legit), C (.3, fraud); top 2 = A, B -> 1/2.
# Day 2: cards D (.5, fraud) and E (.6, fraud); top 2 = E, D -> 2/2.
DAYS = np.array([1, 1, 1, 1, 2, 2])
CARDS = np.array(["A", "A", "B", "C", "D", "E"])
Y = np.array([0, 1, 0, 1, 1, 1])
SCORES = np.array([0.9, 0.1, 0.8, 0.3, 0.5, 0.6])


def test_card_precision_at_k_by_hand():
    assert card_precision_at_k(DAYS, CARDS, Y, SCORES, k=2) == pytest.approx((0.5 + 1.0) / 2)
    # k larger than the cards of a day still divides by k: day 1 2/3, day 2 2/3.
    assert card_precision_at_k(DAYS, CARDS, Y, SCORES, k=3) == pytest.approx(2 / 3)
    # A card counts once however many transactions it has (A's two would otherwise fill the top 2).
    assert card_precision_at_k(DAYS[:4], CARDS[:4], Y[:4], SCORES[:4], k=1) == 1.0


def test_card_precision_at_k_drops_cards_found_on_earlier_days():
    # Day 1: card A is a fraud in the top 1 and is found; day 2: A again scores highest but is
    # blocked already, so the top 1 is B (legit): (1 + 0) / 2, not (1 + 1) / 2.
    days, cards, y, scores = (
        np.array([1, 2, 2]),
        np.array(["A", "A", "B"]),
        np.array([1, 1, 0]),
        np.array([0.9, 0.9, 0.5]),
    )
    assert card_precision_at_k(days, cards, y, scores, k=1) == 0.5


def test_card_precision_at_k_ties_do_not_depend_on_row_order():
    days, cards, y, scores = np.zeros(4), np.array([3, 1, 2, 0]), np.array([1, 0, 0, 1]), np.full(4, 0.5)
    first = card_precision_at_k(days, cards, y, scores, k=2)
    perm = np.array([2, 0, 3, 1])
    assert card_precision_at_k(days[perm], cards[perm], y[perm], scores[perm], k=2) == first == 0.5  # cards 0, 1


def test_recall_at_fpr_by_hand():
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])  # 3 frauds, 7 legit
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    assert recall_at_fpr(y, scores, 0.1) == pytest.approx(2 / 3)  # one false positive is already 1/7 > 0.1
    assert recall_at_fpr(y, scores, 1 / 7) == 1.0
    assert recall_at_fpr(y, scores, 0.99) == 1.0


def test_score_metrics_keys_and_values():
    m = score_metrics(Y, SCORES, DAYS, CARDS, k=2, fpr=0.5)
    assert set(m) == {"auroc", "average_precision", "card_precision_at_k", "recall_at_fpr"}
    assert m["auroc"] == pytest.approx(roc_auc_score(Y, SCORES))
    assert m["average_precision"] == pytest.approx(average_precision_score(Y, SCORES))
    assert m["card_precision_at_k"] == pytest.approx(0.75)
    assert all(isinstance(v, float) for v in m.values())


def test_score_metrics_without_cards_ranks_transactions():
    # Each transaction is its own card: day 1 top 2 = .9 (legit), .8 (legit) -> 0; day 2 -> 1.
    m = score_metrics(Y, SCORES, DAYS, None, k=2, fpr=0.5)
    assert m["card_precision_at_k"] == pytest.approx(0.5)


def test_score_metrics_needs_both_classes():
    with pytest.raises(PipelineError, match="0 fraud"):
        score_metrics(np.zeros(4), np.ones(4), np.zeros(4), None, k=2, fpr=0.1)
