"""Loaders: structural parsing into the canonical table; unreadable input is a one-line DataError."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.common.errors import DataError
from domains.fraud.loaders import ULB_COLUMNS, handbook_to_canonical, read_handbook, read_ulb
from domains.fraud.params import SyntheticParams
from domains.fraud.synthetic import generate_transactions

CANONICAL = ["transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount", "tx_fraud"]
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


@pytest.fixture(scope="module")
def handbook() -> pd.DataFrame:
    return generate_transactions(SyntheticParams(n_customers=20, n_terminals=40, n_days=14, radius=20), seed=3)


def ulb_frame(n: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n, 28)), columns=[f"V{i}" for i in range(1, 29)])
    frame.insert(0, "Time", np.arange(n) * 10.0)
    frame["Amount"] = np.round(rng.uniform(1, 100, n), 2)
    frame["Class"] = [0, 1, 0, 0, 0][:n]
    return frame


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# --- good files -------------------------------------------------------------------------------


def test_handbook_csv_round_trip(tmp_path, handbook):
    path = tmp_path / "transactions.csv"
    handbook.to_csv(path, index=False)
    out = read_handbook(path)
    assert list(out.columns) == [*CANONICAL, "tx_fraud_scenario"]
    assert out["tx_datetime"].dtype == "datetime64[ns]"
    assert (out["tx_datetime"] == handbook["TX_DATETIME"]).all()
    np.testing.assert_array_equal(out["tx_amount"], handbook["TX_AMOUNT"])
    np.testing.assert_array_equal(out["tx_fraud"], handbook["TX_FRAUD"])


def test_handbook_gzip_and_folder_sorted_by_name(tmp_path, handbook):
    handbook.to_csv(tmp_path / "all.csv.gz", index=False)
    pd.testing.assert_frame_equal(read_handbook(tmp_path / "all.csv.gz"), handbook_to_canonical(handbook))
    folder = tmp_path / "days"
    folder.mkdir()
    half = len(handbook) // 2
    handbook.iloc[half:].to_csv(folder / "b.csv.gz", index=False)  # written first, read second
    handbook.iloc[:half].to_csv(folder / "a.csv", index=False)
    (folder / "notes.txt").write_text("ignored")
    pd.testing.assert_frame_equal(read_handbook(folder), handbook_to_canonical(handbook))


def test_handbook_to_canonical_drops_derivable_and_unknown_columns(handbook):
    out = handbook_to_canonical(handbook.drop(columns="TX_FRAUD_SCENARIO").assign(extra=1))
    assert list(out.columns) == CANONICAL
    assert "TX_DATETIME" in handbook  # the input is not modified


def test_ulb_csv(tmp_path):
    frame = ulb_frame()
    path = tmp_path / "creditcard.csv"
    frame.to_csv(path, index=False, quoting=2)  # Kaggle's file quotes the Class column: '"0"'
    out = read_ulb(path)
    v_columns = [f"v{i}" for i in range(1, 29)]
    assert list(out.columns) == ["transaction_id", "tx_datetime", "tx_amount", "tx_fraud", *v_columns]
    assert "customer_id" not in out and "terminal_id" not in out
    assert list(out["transaction_id"]) == [0, 1, 2, 3, 4]
    assert out["tx_datetime"].dtype == "datetime64[ns]"
    assert list(out["tx_datetime"]) == list(pd.Timestamp("2013-09-01") + pd.to_timedelta(frame["Time"], unit="s"))
    assert list(out["tx_fraud"]) == [0, 1, 0, 0, 0]
    np.testing.assert_allclose(out["v28"], frame["V28"])


# --- values are not fixed: the gate must see them -----------------------------------------------


def test_handbook_values_not_coerced(tmp_path, handbook):
    frame = handbook.head(6).copy().astype({"TX_AMOUNT": object, "TX_DATETIME": object})
    frame.loc[0, "TX_AMOUNT"] = "twelve"
    frame.loc[1, "TX_AMOUNT"] = np.nan
    frame.loc[2, "TX_AMOUNT"] = -5.0
    frame.loc[3, "TX_AMOUNT"] = np.inf
    frame.loc[4, "TRANSACTION_ID"] = frame.loc[5, "TRANSACTION_ID"]  # duplicate id
    frame.loc[5, "TX_DATETIME"] = "not a date"
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    out = read_handbook(path)
    amounts = out["tx_amount"]
    assert not pd.api.types.is_numeric_dtype(amounts)  # strings stay strings
    assert amounts[0] == "twelve" and pd.isna(amounts[1]) and amounts[2] == "-5.0" and amounts[3] == "inf"
    assert out["transaction_id"].duplicated().sum() == 1
    assert pd.isna(out["tx_datetime"][5]) and out["tx_datetime"][:5].notna().all()
    out.to_parquet(tmp_path / "t.parquet")  # the acquire stage stores the table as read


def test_folder_with_text_in_one_file_keeps_the_column_as_text(tmp_path, handbook):
    good, bad = handbook.iloc[:5], handbook.iloc[5:8].astype({"TX_AMOUNT": object})
    bad.loc[bad.index[0], "TX_AMOUNT"] = "oops"
    good.to_csv(tmp_path / "a.csv", index=False)
    bad.to_csv(tmp_path / "b.csv", index=False)
    out = read_handbook(tmp_path)
    assert list(out["tx_amount"]) == [str(v) for v in handbook["TX_AMOUNT"][:5]] + ["oops"] + [
        str(v) for v in handbook["TX_AMOUNT"][6:8]
    ]
    out.to_parquet(tmp_path / "t.parquet")


def test_ulb_values_not_coerced(tmp_path):
    frame = ulb_frame().astype({"Class": object, "Time": object, "V3": object})
    frame.loc[0, "Class"] = "yes"
    frame.loc[1, "V3"] = "?"
    frame.loc[2, "Time"] = "later"
    frame.loc[3, "Amount"] = -1.0
    path = tmp_path / "creditcard.csv"
    frame.to_csv(path, index=False)
    out = read_ulb(path)
    assert out["tx_fraud"][0] == "yes" and out["v3"][1] == "?"
    assert out["tx_amount"][3] == -1.0
    assert pd.isna(out["tx_datetime"][2]) and out["tx_datetime"].notna().sum() == 4
    out.to_parquet(tmp_path / "t.parquet")


# --- bad files: one clear line, file untouched ---------------------------------------------------

HANDBOOK_HEADER = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n"
ULB_HEADER = ",".join(ULB_COLUMNS) + "\n"
BAD = {
    "empty": (b"", "empty"),
    "header_only": (None, "no rows"),
    "png": (PNG, "binary"),
    "random_bytes": (np.random.default_rng(0).bytes(4096), "binary"),
    "latin1": (b"a,b\ncaf\xe9,1\n", "UTF-8"),
    "ragged": (b"a,b\n1,2\n3,4,5\n", "not valid CSV"),
}


@pytest.mark.parametrize(
    "reader,header", [(read_handbook, HANDBOOK_HEADER), (read_ulb, ULB_HEADER)], ids=["handbook", "ulb"]
)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_file_raises_one_line_and_leaves_file_alone(tmp_path, reader, header, case):
    content, expected = BAD[case]
    path = write(tmp_path / "creditcard.csv", header if content is None else content)
    before = path.read_bytes()
    with pytest.raises(DataError, match=expected) as err:
        reader(path)
    message = str(err.value)
    assert "\n" not in message and "creditcard.csv" in message
    assert path.read_bytes() == before


@pytest.mark.parametrize("reader", [read_handbook, read_ulb], ids=["handbook", "ulb"])
def test_missing_path(tmp_path, reader):
    with pytest.raises(DataError, match="not found"):
        reader(tmp_path / "nope.csv")


def test_missing_columns_are_all_listed(tmp_path):
    header = "Time," + ",".join(f"V{i}" for i in range(1, 29))
    path = write(tmp_path / "creditcard.csv", header + "\n" + ",".join(["0"] * 29) + "\n")
    with pytest.raises(DataError, match=r"^.*creditcard\.csv: missing required column\(s\): Amount, Class \(found"):
        read_ulb(path)
    path = write(tmp_path / "t.csv", "TRANSACTION_ID,TX_DATETIME,TX_AMOUNT\n0,2018-04-01,1.0\n")
    with pytest.raises(DataError, match=r"t\.csv: missing required column\(s\): CUSTOMER_ID, TERMINAL_ID, TX_FRAUD "):
        read_handbook(path)


def test_gzip_problems(tmp_path):
    plain_gz = write(tmp_path / "x.csv", gzip.compress(HANDBOOK_HEADER.encode()))
    with pytest.raises(DataError, match="gzip-compressed"):
        read_handbook(plain_gz)
    fake_gz = write(tmp_path / "y.csv.gz", HANDBOOK_HEADER)
    with pytest.raises(DataError, match="y.csv.gz: not a valid gzip"):
        read_handbook(fake_gz)


def test_folder_problems(tmp_path, handbook):
    with pytest.raises(DataError, match="no .csv or .csv.gz"):
        read_handbook(tmp_path)
    handbook.to_csv(tmp_path / "a.csv", index=False)
    write(tmp_path / "b.csv", "TRANSACTION_ID,TX_AMOUNT\n1,2\n")
    with pytest.raises(DataError, match=r"b\.csv: missing required column"):
        read_handbook(tmp_path)


def test_wrong_suffix(tmp_path):
    path = write(tmp_path / "creditcard.parquet", ULB_HEADER)
    with pytest.raises(DataError, match="expected a .csv or .csv.gz"):
        read_ulb(path)
