"""Bootstrap intervals and the paired comparison (issue 19): vectorised metrics equal sklearn's,
intervals cover the truth at about the nominal rate, seed noise is not a promotion."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from domains.common import bootstrap as bs
from domains.common import units


def _binormal(rng, n, d, prevalence=0.3):
    y = (rng.random(n) < prevalence).astype(int)
    return y, rng.normal(size=n) + d * y


def test_weighted_metrics_equal_sklearn_at_unit_weights_and_with_weights():
    rng = np.random.default_rng(0)
    y, s = _binormal(rng, 500, 1.0)
    s = np.round(s, 1)  # ties
    unit = rng.integers(0, 120, 500)  # several rows per unit: a unit's count weights all its rows
    unit = bs.dense_units(unit)
    counts = rng.integers(0, 3, size=(3, unit.max() + 1)).astype(np.int32)
    for fn, ref in ((bs.weighted_auroc, roc_auc_score), (bs.weighted_average_precision, average_precision_score)):
        metric = fn(y, s, unit)
        assert bs.point(metric, unit.max() + 1) == pytest.approx(ref(y, s), abs=1e-12)
        assert metric(counts) == pytest.approx([ref(y, s, sample_weight=row[unit]) for row in counts], abs=1e-12)
    values = rng.random(500)
    values[::7] = np.nan  # undefined rows are left out
    expected = [np.nansum(values * row[unit]) / np.sum(np.isfinite(values) * row[unit]) for row in counts]
    assert bs.weighted_mean(values, unit)(counts) == pytest.approx(expected)
    proba = rng.dirichlet(np.ones(3), size=500)
    y3 = rng.integers(0, 3, 500)
    macro = np.mean([roc_auc_score(y3 == c, proba[:, c]) for c in range(3)])
    assert bs.point(bs.weighted_macro_auroc(y3, proba, np.arange(500)), 500) == pytest.approx(macro)


def test_resamples_are_seeded_and_counts_sum_to_the_units():
    a = np.concatenate(list(bs.resample_counts(50, 30, seed=7, chunk=8)))
    b = np.concatenate(list(bs.resample_counts(50, 30, seed=7, chunk=30)))
    assert a.shape == (30, 50) and (a.sum(axis=1) == 50).all()
    assert not np.array_equal(a, np.concatenate(list(bs.resample_counts(50, 30, seed=8, chunk=8))))
    np.testing.assert_array_equal(a[:8], b[:8])  # the chunk size changes the stream, the seed fixes it


def test_auroc_interval_covers_the_true_value_at_about_the_nominal_rate():
    """Binormal scores with known AUROC = Phi(d / sqrt 2); 200 seeded test sets of 300 rows."""
    d, rng, hits = 1.0, np.random.default_rng(1), 0
    truth = norm.cdf(d / np.sqrt(2))
    for trial in range(200):
        y, s = _binormal(rng, 300, d)
        low, high = bs.interval(
            bs.bootstrap({"auc": bs.weighted_auroc(y, s, np.arange(300))}, 300, 300, 300, trial)["auc"]
        )
        hits += low <= truth <= high
    assert 0.90 <= hits / 200 <= 0.99


def _frame(rng, n=2000, champion_d=1.0, challenger_d=1.0, shared=0.9):
    """Two models' scores on the same rows; `shared` of the score is the same signal (the models agree)."""
    y = (rng.random(n) < 0.2).astype(int)
    common = rng.normal(size=n)

    def score(d: float) -> np.ndarray:
        return shared * common + np.sqrt(1 - shared**2) * rng.normal(size=n) + d * y

    return pd.DataFrame(
        {
            "row": np.arange(n),
            "unit": np.arange(n),
            "label": y,
            "new:p1": score(challenger_d),
            "old:p1": score(champion_d),
        }
    )


def test_seed_noise_is_not_a_difference_and_a_clear_improvement_is():
    rng = np.random.default_rng(3)
    same = _frame(rng)
    result = units.paired(same, "new", same, "old", "average_precision", "average_precision", True, 1000, 0)
    assert result.low <= 0 <= result.high
    better = _frame(rng, challenger_d=1.6)
    result = units.paired(better, "new", better, "old", "auroc", "auroc", True, 1000, 0)
    assert result.low > 0.02 and "95% CI" in result.describe()


def test_intervals_per_model_and_split_hash():
    frame = _frame(np.random.default_rng(4))
    out = units.intervals(frame, {"auroc": "auroc", "accuracy": "accuracy"}, 200, 0)
    assert set(out) == {"new", "old"}
    point = roc_auc_score(frame["label"], frame["new:p1"])
    low, high = out["new"]["auroc"]
    assert low < point < high and high - low < 0.1
    assert units.split_hash(frame) == units.split_hash(frame.copy())
    assert units.split_hash(frame) != units.split_hash(frame.iloc[1:])
