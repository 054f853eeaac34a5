"""Features: window counts and averages, no label leakage, the time split."""

import numpy as np
import pandas as pd
import pytest

from domains.common.errors import PipelineError
from domains.fraud.features import build_features, feature_columns, time_split
from domains.fraud.loaders import handbook_to_canonical
from domains.fraud.params import PrepareParams, SyntheticParams
from domains.fraud.synthetic import generate_transactions

DAY0 = pd.Timestamp("2018-04-01")  # a Sunday
ONE_DAY = pd.Timedelta(days=1)


def at(day: int, hhmm: str) -> pd.Timestamp:
    return DAY0 + day * ONE_DAY + pd.Timedelta(f"{hhmm}:00")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    p = SyntheticParams(n_customers=200, n_terminals=300, n_days=45)
    return handbook_to_canonical(generate_transactions(p, seed=11))


def test_hand_built_windows():
    rows = [  # (time, customer, amount, fraud); all at terminal 9
        (at(0, "10:00"), 1, 10.0, 1),
        (at(0, "12:00"), 1, 20.0, 0),
        (at(0, "20:00"), 2, 99.0, 0),
        (at(1, "10:00"), 1, 30.0, 0),
        (at(2, "05:59"), 1, 5.0, 0),
        (at(2, "10:00"), 1, 7.0, 0),
        (at(8, "10:00"), 1, 40.0, 0),
        (at(1, "12:00"), 3, 50.0, 0),
    ]
    tx = pd.DataFrame(rows, columns=["tx_datetime", "customer_id", "tx_amount", "tx_fraud"])
    tx["terminal_id"] = 9
    tx.index = [80, 70, 60, 50, 40, 30, 20, 10]  # any index and order: the output keeps both
    f = build_features(tx, [1, 7], [1], delay_days=1)
    assert list(f.index) == list(tx.index)
    assert list(f["tx_during_weekend"]) == [1, 1, 1, 0, 0, 0, 0, 0]  # day 0 is a Sunday, day 8 a Monday
    assert list(f["tx_during_night"]) == [0, 0, 0, 0, 1, 0, 0, 0]  # 05:59 is night, 06:00 is not
    # Customer windows (t - w, t]: a transaction exactly w days before is out.
    assert list(f["customer_nb_tx_1d"]) == [1, 2, 1, 2, 2, 2, 1, 1]
    np.testing.assert_allclose(f["customer_avg_amount_1d"], [10, 15, 99, 25, 17.5, 6, 40, 50])
    assert list(f["customer_nb_tx_7d"]) == [1, 2, 1, 3, 4, 5, 3, 1]
    np.testing.assert_allclose(f["customer_avg_amount_7d"], [10, 15, 99, 20, 16.25, 14.4, 52 / 3, 50])
    # Terminal window [t - 2d, t - 1d): the start is in, the end is out; 0 risk without transactions.
    assert list(f["terminal_nb_tx_1d"]) == [0, 0, 0, 0, 3, 3, 0, 1]
    np.testing.assert_allclose(f["terminal_risk_1d"], [0, 0, 0, 0, 1 / 3, 1 / 3, 0, 1])


def test_matches_brute_force(table):
    f = build_features(table, [7], [7], delay_days=7)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(table), 150, replace=False):
        r = table.iloc[i]
        t = r["tx_datetime"]
        own = table[
            (table["customer_id"] == r["customer_id"])
            & (table["tx_datetime"] > t - 7 * ONE_DAY)
            & (table["tx_datetime"] <= t)
        ]
        assert f["customer_nb_tx_7d"].iloc[i] == len(own)
        assert f["customer_avg_amount_7d"].iloc[i] == pytest.approx(own["tx_amount"].mean())
        known = table[
            (table["terminal_id"] == r["terminal_id"])
            & (table["tx_datetime"] >= t - 14 * ONE_DAY)
            & (table["tx_datetime"] < t - 7 * ONE_DAY)
        ]
        assert f["terminal_nb_tx_7d"].iloc[i] == len(known)
        assert f["terminal_risk_7d"].iloc[i] == pytest.approx(known["tx_fraud"].mean() if len(known) else 0.0)


def test_labels_not_yet_known_do_not_change_features(table):
    delay = 7
    base = build_features(table, [1, 7, 30], [1, 7, 30], delay)
    cutoff = table["tx_datetime"].min() + 30 * ONE_DAY
    # Flip every label not yet known at the cutoff (and scramble the scenario column, never a feature).
    unknown = table["tx_datetime"] >= cutoff - delay * ONE_DAY
    changed = table.assign(
        tx_fraud=np.where(unknown, 1 - table["tx_fraud"], table["tx_fraud"]),
        tx_fraud_scenario=np.random.default_rng(0).integers(0, 4, len(table)),
    )
    after = build_features(changed, [1, 7, 30], [1, 7, 30], delay)
    upto = (table["tx_datetime"] <= cutoff).to_numpy()
    pd.testing.assert_frame_equal(after[upto], base[upto])
    # The test can fail: later rows, whose windows hold flipped labels, do change.
    assert not after.loc[~upto, "terminal_risk_7d"].equals(base.loc[~upto, "terminal_risk_7d"])


def test_without_ids_only_row_features_and_v_columns():
    tx = pd.DataFrame(
        {
            "transaction_id": [0, 1],
            "tx_datetime": [at(0, "01:00"), at(1, "13:00")],
            "tx_amount": [1.0, 2.0],
            "tx_fraud": [0, 1],
            "v1": [0.5, -0.5],
            "v2": [1.0, 2.0],
        }
    )
    f = build_features(tx, [1, 7], [1, 7], 7)
    assert list(f.columns) == ["tx_amount", "tx_during_weekend", "tx_during_night", "v1", "v2"]
    assert feature_columns(f.assign(label=0, split="train", card_id=1, day=0)) == list(f.columns)


def test_bad_rows_are_refused():
    tx = pd.DataFrame({"tx_datetime": [at(0, "01:00"), pd.NaT], "tx_amount": [1.0, 2.0], "tx_fraud": [0, 1]})
    with pytest.raises(PipelineError, match="1 row"):
        build_features(tx, [1], [1], 7)


# --- time split ---------------------------------------------------------------------------------

SPLIT = PrepareParams(delay_days=7, train_length=20, val_length=5, gap_length=7, test_length=10)


def hourly(days: int) -> pd.Series:
    return pd.Series(pd.date_range(DAY0, periods=24 * days, freq="h"))


def test_time_split_periods_and_gap():
    dt = hourly(100)
    masks = time_split(dt, SPLIT, warmup_days=37)
    day = (dt - DAY0).dt.days.to_numpy()
    # Default start: the warm-up (delay 7 + longest window 30) days after the first day.
    assert sorted(set(day[masks["train"]])) == list(range(37, 52))
    assert sorted(set(day[masks["val"]])) == list(range(52, 57))
    assert sorted(set(day[masks["test"]])) == list(range(64, 74))  # 7-day gap after val
    assert not (masks["train"] & masks["val"]).any() and not (masks["val"] & masks["test"]).any()
    assert not (masks["train"] & masks["test"]).any()


def test_time_split_explicit_start_whole_days():
    dt = hourly(100) + pd.Timedelta(minutes=17)
    p = SPLIT.model_copy(update={"train_start": "2018-04-05 15:00"})  # normalised to midnight
    masks = time_split(dt, p, warmup_days=37)
    assert dt[masks["train"]].min() == pd.Timestamp("2018-04-05 00:17")


@pytest.mark.parametrize(
    "update,message",
    [
        ({"test_length": 60}, "test period runs past the data"),
        ({"train_start": "2018-03-01"}, "empty train/val split"),
        ({"val_length": 20}, "empty train split"),
    ],
)
def test_time_split_errors(update, message):
    with pytest.raises(PipelineError, match=message) as err:
        time_split(hourly(100), SPLIT.model_copy(update=update), warmup_days=37)
    assert "data covers 2018-04-01..2018-07-09" in str(err.value) and "\n" not in str(err.value)


def test_time_split_in_hours_for_short_data():
    dt = hourly(2)  # two days, like ULB's creditcard.csv
    p = PrepareParams(split_unit="hour", train_length=24, val_length=6, gap_length=2, test_length=20)
    masks = time_split(dt, p, warmup_days=0)
    hours = ((dt - DAY0) / pd.Timedelta(hours=1)).to_numpy()
    assert hours[masks["train"]].max() == 17 and hours[masks["val"]].min() == 18
    assert hours[masks["test"]].min() == 26 and hours[masks["test"]].max() == 45
