"""Metrics on examples small enough to compute by hand."""

import numpy as np
import pytest

from domains.recsys.metrics import ACCURACY, DIRECTIONS, mae, novelty, ranking_metrics, rmse, top_k


def test_errors():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(np.sqrt(4 / 3))
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)


def test_top_k_skips_seen_items_and_breaks_ties_by_index():
    scores = np.array([[0.9, 0.5, 0.5, 0.1, 0.5]])
    seen = np.array([[True, False, False, False, False]])
    assert top_k(scores, seen, k=3).tolist() == [[1, 2, 4]]


def test_ranking_metrics_by_hand():
    # User A: hits at ranks 1 and 3 of 3 relevant; user B: no hit of 1 relevant; user C: nothing relevant (ignored).
    recommended = np.array([[10, 11, 12], [20, 21, 22], [30, 31, 32]])
    relevant = [{10, 12, 99}, {98}, set()]
    m = ranking_metrics(recommended, relevant, catalogue=18)
    assert m["precision_at_3"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall_at_3"] == pytest.approx((2 / 3 + 0) / 2)
    dcg = 1 + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert m["ndcg_at_3"] == pytest.approx(dcg / idcg / 2)
    assert m["map_at_3"] == pytest.approx((1 + 2 / 3) / 3 / 2)
    assert m["coverage"] == pytest.approx(9 / 18)


def test_every_metric_has_a_direction():
    assert DIRECTIONS["rmse"] is False and DIRECTIONS["ndcg_at_10"] is True and DIRECTIONS["fit_seconds"] is False
    assert "fit_seconds" not in ACCURACY and "rmse" in ACCURACY


def test_novelty_is_the_mean_self_information_of_recommended_items():
    # 8 users: item 1 rated by 4 (share 1/2: 1 bit), item 2 by 1 (1/8: 3 bits), item 3 by none (counted as 1).
    recommended = np.array([[1, 2], [1, 3]])
    assert novelty(recommended, {1: 4, 2: 1}, n_users=8) == pytest.approx((1 + 3 + 1 + 3) / 4)
