"""The transaction simulator: handbook format, determinism, the three fraud scenarios."""

import numpy as np
import pandas as pd
import pytest

from domains.fraud.params import SyntheticParams
from domains.fraud.synthetic import COLUMNS, generate_transactions

SMALL = SyntheticParams(n_customers=300, n_terminals=600, n_days=60)


@pytest.fixture(scope="module")
def tx() -> pd.DataFrame:
    return generate_transactions(SMALL, seed=7)


def test_same_seed_same_frame_other_seed_differs(tx):
    pd.testing.assert_frame_equal(tx, generate_transactions(SMALL, seed=7))
    assert not tx.equals(generate_transactions(SMALL, seed=8))


def test_handbook_table_format(tx):
    assert list(tx.columns) == COLUMNS
    assert tx["TX_DATETIME"].dtype == "datetime64[ns]"
    assert (tx["TRANSACTION_ID"].to_numpy() == np.arange(len(tx))).all()
    assert tx["TX_TIME_SECONDS"].is_monotonic_increasing
    start = pd.Timestamp(SMALL.start_date)
    assert (tx["TX_DATETIME"] == start + pd.to_timedelta(tx["TX_TIME_SECONDS"], unit="s")).all()
    assert (tx["TX_TIME_DAYS"] == tx["TX_TIME_SECONDS"] // 86_400).all()
    assert tx["TX_TIME_DAYS"].between(0, SMALL.n_days - 1).all()
    assert tx["CUSTOMER_ID"].between(0, SMALL.n_customers - 1).all()
    assert tx["TERMINAL_ID"].between(0, SMALL.n_terminals - 1).all()
    assert (tx["TX_AMOUNT"] >= 0).all() and (tx["TX_AMOUNT"] == tx["TX_AMOUNT"].round(2)).all()
    # ~2 transactions per customer and day on average (mean_nb_tx_per_day ~ U(0, 4)).
    assert 1.5 < len(tx) / (SMALL.n_customers * SMALL.n_days) < 2.5


def test_all_three_scenarios_and_labels_agree(tx):
    scenarios = set(tx["TX_FRAUD_SCENARIO"].unique())
    assert scenarios == {0, 1, 2, 3}
    assert ((tx["TX_FRAUD"] == 1) == (tx["TX_FRAUD_SCENARIO"] > 0)).all()
    # Scenario 1 catches every large amount the other scenarios did not relabel.
    assert (tx.loc[tx["TX_FRAUD_SCENARIO"] == 0, "TX_AMOUNT"] <= 220).all()
    assert (tx.loc[tx["TX_FRAUD_SCENARIO"] == 1, "TX_AMOUNT"] > 220).all()


def test_scenario_2_compromises_whole_terminal_days(tx):
    # Compromise is per (terminal, day): every transaction of a compromised terminal-day is fraud.
    is_s2 = (tx["TX_FRAUD_SCENARIO"] == 2).rename("s2")
    day_has_s2 = is_s2.groupby([tx["TERMINAL_ID"], tx["TX_TIME_DAYS"]]).transform("any")
    assert (tx.loc[day_has_s2, "TX_FRAUD"] == 1).all()
    # ... and lasts 28 days: a terminal's scenario-2 transactions span several days.
    spans = tx[tx["TX_FRAUD_SCENARIO"] == 2].groupby("TERMINAL_ID")["TX_TIME_DAYS"].agg(lambda d: d.max() - d.min())
    assert spans.max() >= 14


def test_scenario_3_is_about_a_third_of_compromised_cards_transactions(tx):
    s3 = tx[tx["TX_FRAUD_SCENARIO"] == 3]
    cards = s3["CUSTOMER_ID"].unique()
    assert len(cards) > 0
    assert s3["TX_AMOUNT"].mean() > 3 * tx.loc[tx["TX_FRAUD"] == 0, "TX_AMOUNT"].mean()  # amounts x5


def test_fraud_rate_plausible_at_handbook_density():
    # The handbook's population (5000 cards, 10000 terminals) gives ~0.84% over 183 days;
    # 90 days include the 28-day warm-up of scenario 2, so a little less.
    tx = generate_transactions(SyntheticParams(n_customers=5000, n_terminals=10000, n_days=90), seed=0)
    assert 0.005 < tx["TX_FRAUD"].mean() < 0.012


def test_no_compromise_leaves_only_scenario_1():
    p = SMALL.model_copy(update={"compromised_terminals_per_day": 0, "compromised_customers_per_day": 0})
    tx = generate_transactions(p, seed=1)
    assert set(tx["TX_FRAUD_SCENARIO"].unique()) <= {0, 1}


def test_customers_without_reachable_terminal_make_no_transactions():
    # 50 terminals, radius 2: a customer reaches one with probability ~1 - exp(-50 * pi * 4 / 10000) ~ 6%.
    p = SMALL.model_copy(update={"n_terminals": 50, "radius": 2.0})
    tx = generate_transactions(p, seed=2)
    assert tx["CUSTOMER_ID"].nunique() < 0.15 * p.n_customers
