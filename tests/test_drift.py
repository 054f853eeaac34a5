"""The drift check's power and false-alarm rate on fraud features (seeded), and PSI by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.common.drift import KS_SAMPLE, Accumulator, build_profile, compare, psi
from domains.fraud.features import build_features, feature_columns
from domains.fraud.loaders import handbook_to_canonical
from domains.fraud.params import SyntheticParams
from domains.fraud.synthetic import generate_transactions

BATCH = 2000


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    tx = handbook_to_canonical(
        generate_transactions(SyntheticParams(n_customers=400, n_terminals=800, n_days=40), seed=3)
    )
    tx = tx.sort_values("tx_datetime", kind="stable").reset_index(drop=True)
    frame = build_features(tx, [1, 7], [1, 7], 3)
    return frame[feature_columns(frame)]


def test_psi_by_hand():
    expected, actual = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    assert psi(expected, actual) == pytest.approx((0.25 - 0.5) * np.log(0.5) + (0.75 - 0.5) * np.log(1.5))
    assert psi(expected, expected) == 0.0


def test_a_one_sigma_shift_in_one_feature_is_blocked(features):
    profile = build_profile(features, {}, seed=0)
    batch = features.sample(BATCH, random_state=1).reset_index(drop=True)
    batch["tx_amount"] += features["tx_amount"].std()
    result = compare(profile, batch, None, psi_warn=0.1, psi_block=0.25, min_rows=100)
    flagged = {c.column: c for c in result.checks if c.severity != "pass"}
    assert result.verdict == "block" and set(flagged) == {"tx_amount"}
    assert flagged["tx_amount"].psi >= 0.25 and flagged["tx_amount"].ks_pvalue < 1e-6


def test_resamples_of_the_reference_rarely_warn(features):
    profile = build_profile(features, {}, seed=0)
    warned = sum(
        compare(
            profile,
            features.sample(BATCH, replace=True, random_state=seed).reset_index(drop=True),
            None,
            psi_warn=0.1,
            psi_block=0.25,
            min_rows=100,
        ).verdict
        != "pass"
        for seed in range(100)
    )
    assert warned <= 1  # at most 1 % false warnings


def test_small_batches_are_not_judged(features):
    profile = build_profile(features, {}, seed=0)
    result = compare(profile, features.head(50) * 10, None, psi_warn=0.1, psi_block=0.25, min_rows=100)
    assert result.verdict == "not_judged" and "fewer than score.drift.min_rows=100" in result.reasons[0]


def test_unseen_categories_count_as_drift():
    reference = pd.DataFrame({"kind": ["a", "b"] * 500})
    profile = build_profile(reference, {}, seed=0)
    result = compare(profile, pd.DataFrame({"kind": ["a", "c"] * 500}), None, 0.1, 0.25, 100)
    assert result.verdict == "block"


def test_chunks_give_the_whole_batchs_drift(features):
    """PSI from counts (exact), means from sums, the KS test on the same bounded sample whatever the chunks."""
    profile = build_profile(features, {}, seed=0)
    batch = features.sample(3000, random_state=2).reset_index(drop=True)
    batch.loc[::11, "tx_amount"] = np.nan  # missing values are left out, as whole
    whole = compare(profile, batch, None, 0.1, 0.25, 100)
    for sample in (KS_SAMPLE, 1000):  # every value kept (as before chunks), and a bound below the batch
        one, chunked = Accumulator(profile, sample), Accumulator(profile, sample)
        one.add(batch, None)
        for start in range(0, len(batch), 701):
            chunked.add(batch.iloc[start : start + 701], None)
        a, b = one.result(0.1, 0.25, 100), chunked.result(0.1, 0.25, 100)
        assert a.verdict == b.verdict and a.rows == b.rows == len(batch)
        for x, y, w in zip(a.checks, b.checks, whole.checks):
            assert (x.psi, x.ks_statistic, x.ks_pvalue) == (y.psi, y.ks_statistic, y.ks_pvalue)
            assert x.batch_mean == (None if y.batch_mean is None else pytest.approx(y.batch_mean, rel=1e-12))
            if sample == KS_SAMPLE:  # under the bound: exactly what the whole batch gave
                assert (x.psi, x.ks_statistic, x.ks_pvalue, x.batch_mean) == (
                    w.psi,
                    w.ks_statistic,
                    w.ks_pvalue,
                    w.batch_mean,
                )
    assert len(chunked.columns["tx_amount"].values) == 1000  # the bound holds
