"""Every bad input, fed through the real-data path, stops before training with a one-line reason
per failed check, no traceback, the input file untouched and no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import assert_stopped, digest, run_to_gate, small_fraud_params


def ulb_frame(n: int = 2000, fraud_rate: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """A small table in the ULB creditcard.csv format (Time, V1..V28, Amount, Class)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"Time": np.sort(rng.integers(0, 172_800, n)).astype(float)})
    for i in range(1, 29):
        frame[f"V{i}"] = rng.normal(size=n)
    frame["Amount"] = rng.gamma(2.0, 40.0, n).round(2) + 0.01
    frame["Class"] = (rng.random(n) < fraud_rate).astype(int)
    return frame


def handbook_frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.Timestamp("2018-04-01") + pd.to_timedelta(np.sort(rng.integers(0, 30 * 86400, n)), unit="s")
    fraud = (rng.random(n) < 0.01).astype(int)
    return pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(n),
            "TX_DATETIME": times.strftime("%Y-%m-%d %H:%M:%S"),
            "CUSTOMER_ID": rng.integers(0, 100, n),
            "TERMINAL_ID": rng.integers(0, 200, n),
            "TX_AMOUNT": rng.gamma(2.0, 30.0, n).round(2) + 0.01,
            "TX_TIME_SECONDS": 0,
            "TX_TIME_DAYS": 0,
            "TX_FRAUD": fraud,
            "TX_FRAUD_SCENARIO": fraud,
        }
    )


def _run_to_gate(root: Path, source: str, data_file: Path, capsys, **gate) -> tuple[int, str]:
    return run_to_gate(root, "fraud", small_fraud_params(), source, data_file, capsys, **gate)


def _ulb_with(mutate) -> pd.DataFrame:
    frame = ulb_frame()
    mutate(frame)
    return frame


def _set(column: str, rows: list[int], value):
    def mutate(frame: pd.DataFrame) -> None:
        if isinstance(value, str):
            frame[column] = frame[column].astype(object)
        frame.loc[rows, column] = value

    return mutate


BAD_ULB = {
    "missing column": (lambda f: f.drop(columns="Amount", inplace=True), "missing required column(s): Amount"),
    "wrong column type": (_set("Amount", [4, 9], "twelve"), "tx_amount:dtype [pandera]: 2 of 2000 rows fail"),
    "NaN amounts": (_set("Amount", [1, 2, 3], np.nan), "tx_amount:not_null [pandera]: 3 of 2000 rows"),
    "infinite amounts": (_set("Amount", [7], np.inf), "tx_amount:finite [pandera]: 1 of 2000 rows"),
    "negative amounts": (_set("Amount", [5, 6], -12.5), "tx_amount:non_negative [pandera]: 2 of 2000 rows"),
    "labels outside 0/1": (_set("Class", [10], 2), "tx_fraud:binary [pandera]: 1 of 2000 rows"),
    "fraud rate 0%": (lambda f: f.__setitem__("Class", 0), "fraud_rate_in_band [great_expectations]: observed 0"),
    "fraud rate 60%": (
        lambda f: f.__setitem__("Class", (np.arange(len(f)) % 5 < 3).astype(int)),
        "fraud_rate_in_band [great_expectations]: observed 0.6",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ULB))
def test_bad_ulb_file_stops_before_training(case, stage_root, capsys):
    mutate, expected = BAD_ULB[case]
    data_file = stage_root / "creditcard.csv"
    _ulb_with(mutate).to_csv(data_file, index=False)
    before = digest(data_file)
    code, err = _run_to_gate(stage_root, "ulb", data_file, capsys)
    assert_stopped(stage_root, "fraud", data_file, before, code, err, expected)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", "binary data, not CSV text"),
        (b"Time,V1,Amount,Class\n", "no rows (header only)"),
        (b"this is a note, not a table\nsecond line", "missing required column(s)"),
    ],
)
def test_unreadable_files(content, expected, stage_root, capsys):
    data_file = stage_root / "creditcard.csv"
    data_file.write_bytes(content)
    before = digest(data_file)
    code, err = _run_to_gate(stage_root, "ulb", data_file, capsys)
    assert_stopped(stage_root, "fraud", data_file, before, code, err, expected)


def test_duplicate_transaction_ids_block(stage_root, capsys):
    frame = handbook_frame()
    frame.loc[[10, 11], "TRANSACTION_ID"] = 3
    data_file = stage_root / "transactions.csv"
    frame.to_csv(data_file, index=False)
    before = digest(data_file)
    code, err = _run_to_gate(stage_root, "handbook", data_file, capsys)
    assert_stopped(stage_root, "fraud", data_file, before, code, err, "transaction_id:unique [pandera]: 3 of 2000 rows")


def test_missing_file(stage_root, capsys):
    code, err = _run_to_gate(stage_root, "ulb", stage_root / "nope.csv", capsys)
    assert code == 1 and "file not found" in err


def test_quarantine_sets_rows_aside_and_the_run_continues(stage_root, capsys):
    data_file = stage_root / "creditcard.csv"
    _ulb_with(_set("Amount", [5, 6], -12.5)).to_csv(data_file, index=False)
    before = digest(data_file)
    code, err = _run_to_gate(stage_root, "ulb", data_file, capsys, severity={"tx_amount:non_negative": "quarantine"})
    assert code == 0, err
    validate_dir = stage_root / "data" / "fraud" / "validate"
    kept = pd.read_parquet(validate_dir / "validated.parquet")
    quarantined = pd.read_parquet(validate_dir / "quarantine.parquet")
    assert len(kept) == 1998 and sorted(quarantined["transaction_id"]) == [5, 6]
    assert set(quarantined["quarantine_reason"]) == {"tx_amount:non_negative"}
    assert digest(data_file) == before


def test_good_ulb_file_passes_the_gate(stage_root, capsys):
    data_file = stage_root / "creditcard.csv"
    ulb_frame().to_csv(data_file, index=False)
    code, err = _run_to_gate(stage_root, "ulb", data_file, capsys)
    assert code == 0, err
    assert (stage_root / "data" / "fraud" / "validate" / "validated.parquet").exists()
