"""Image scores from maps, pixel AUROC and average precision against hand-made cases and scikit-learn, F1 at a
threshold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from domains.defects.metrics import (
    average_precision,
    image_metrics,
    image_scores,
    per_type_auroc,
    pixel_auroc,
    threshold_on_good,
)


def test_pixel_auroc_of_a_hand_made_case():
    # Defect pixels score 0.9, 0.5, 0.2; good pixels 0.1, 0.2, 0.3, 0.5. Pairs won (a tie counts half):
    # 0.9 beats all 4; 0.5 beats 3 and ties 1 (3.5); 0.2 beats 1 and ties 1 (1.5): 9 of 12 pairs.
    maps = np.array([0.9, 0.5, 0.2, 0.1, 0.2, 0.3, 0.5]).reshape(1, 1, 7)
    masks = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool).reshape(1, 1, 7)
    assert pixel_auroc(maps, masks) == 0.75
    assert pixel_auroc(maps, masks) == roc_auc_score(masks.ravel(), maps.ravel())


def test_pixel_auroc_matches_sklearn_on_random_maps():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 16, 16)) < 0.1
    maps = (rng.random((5, 16, 16)).round(2) + masks * 0.3).astype(np.float32)  # rounded: many ties
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


def test_pixel_auroc_needs_both_classes():
    assert np.isnan(pixel_auroc(np.zeros((1, 2, 2)), np.zeros((1, 2, 2), dtype=bool)))


def test_average_precision_of_a_hand_made_case():
    # Ranked: 0.9 defect (precision 1, recall 1/3), 0.5 defect and good tied (2/3 at 2/3), 0.3 good, 0.2 defect
    # and good tied (3/6 at 3/3): AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 1/2.
    scores = np.array([0.9, 0.5, 0.2, 0.1, 0.2, 0.3, 0.5])
    truth = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    assert average_precision(truth, scores) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3, abs=1e-15)
    assert average_precision(truth, scores) == pytest.approx(average_precision_score(truth, scores), abs=1e-15)


@pytest.mark.parametrize("rounding", [2, 6])  # many ties, few
def test_average_precision_matches_sklearn_on_random_maps(rounding: int):
    rng = np.random.default_rng(rounding)
    truth = rng.random(20_000) < 0.05
    scores = (rng.random(20_000).round(rounding) + truth * 0.2).astype(np.float32)
    assert average_precision(truth, scores) == pytest.approx(average_precision_score(truth, scores), abs=1e-12)


def test_average_precision_needs_both_classes():
    assert np.isnan(average_precision(np.zeros(4, bool), np.arange(4.0)))
    assert np.isnan(average_precision(np.ones(4, bool), np.arange(4.0)))


def test_image_score_is_the_maximum_of_the_smoothed_map():
    maps = np.zeros((2, 20, 20), dtype=np.float32)
    maps[0, 5, 5] = 1.0  # one hot pixel: noise
    maps[1, 10:14, 10:14] = 0.5  # a defect-sized patch
    raw = image_scores(maps, 0.0)
    pooled = image_scores(maps, 0.2)  # a 4 x 4 box
    assert raw.tolist() == [1.0, 0.5]
    assert pooled[1] > pooled[0] and pooled[1] == pytest.approx(0.5)


def test_image_metrics_at_a_threshold():
    defective = np.array([False, False, True, True])
    scores = np.array([0.1, 0.6, 0.5, 0.9])
    m = image_metrics(defective, scores, threshold=0.55)
    assert m["image_auroc"] == 0.75
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)


def test_per_type_auroc_compares_each_type_with_the_good_images():
    labels = np.array(["good", "good", "crack", "crack", "spot"])
    scores = np.array([0.1, 0.2, 0.9, 0.15, 0.05])
    assert per_type_auroc(labels, scores, "good") == {"crack": 0.75, "spot": 0.0}


def test_threshold_is_a_quantile_of_good_scores():
    assert threshold_on_good(np.arange(101.0), 0.95) == 95.0


def test_models_near_chance_are_named_in_a_warning():
    from domains.common.report import WARNING, _warnings
    from domains.defects.evaluate import near_chance_notes

    notes = near_chance_notes(
        {"a": {"image_auroc": 0.55}, "b": {"image_auroc": 0.61}, "c": {"image_auroc": float("nan")}}, candidate="a"
    )
    assert len(notes) == 1 and notes[0].startswith(f"{WARNING}a (the candidate) is near chance") and "0.550" in notes[0]
    assert _warnings(["Source: x.", *notes]) == notes  # the report lists these next to the decision
    by_category = {"a": {"image_auroc": 0.7, "image_auroc_surface": 0.9, "image_auroc_part": 0.54}}
    (note,) = near_chance_notes(by_category, candidate="b", categories=["surface", "part"])
    assert note.startswith(f"{WARNING}a is near chance on category part on the test set") and "0.540" in note
