"""Read real transaction files into the canonical table that the quality gate checks.

Canonical columns: transaction_id, tx_datetime (datetime64[ns]), customer_id, terminal_id,
tx_amount, tx_fraud, optional tx_fraud_scenario, and v1..v28 for ULB data.

Loaders parse structure only. Values stay as pandas read them (strings in a numeric column,
NaN, inf, negatives, duplicates) so that the gate sees and reports them; only the datetime is
converted, with unparseable values becoming NaT (reported by the gate as nulls). An unreadable
file, or one that lacks required columns, raises DataError with one line naming the file.
"""

from __future__ import annotations

import codecs
import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from domains.common.errors import DataError

HANDBOOK_COLUMNS = {
    "TRANSACTION_ID": "transaction_id",
    "TX_DATETIME": "tx_datetime",
    "CUSTOMER_ID": "customer_id",
    "TERMINAL_ID": "terminal_id",
    "TX_AMOUNT": "tx_amount",
    "TX_FRAUD": "tx_fraud",
}
HANDBOOK_OPTIONAL = {"TX_FRAUD_SCENARIO": "tx_fraud_scenario"}
V_COLUMNS = [f"V{i}" for i in range(1, 29)]
ULB_COLUMNS = ["Time", *V_COLUMNS, "Amount", "Class"]
ULB_EPOCH = np.datetime64("2013-09-01T00:00:00", "ns")  # the ULB data set covers two days of Sept 2013
CSV_SUFFIXES = (".csv", ".csv.gz")
_SNIFF_BYTES = 64 * 1024
_MAX_ULB_SECONDS = 7e9  # beyond ~220 years the datetime64[ns] range overflows: NaT instead


def handbook_to_canonical(df: pd.DataFrame, source: str = "handbook table", labels: bool = True) -> pd.DataFrame:
    """Rename the handbook's columns; drop TX_TIME_SECONDS/TX_TIME_DAYS (derivable) and unknown ones.

    labels=False (scoring new transactions): TX_FRAUD may be absent.
    """
    required = _required_handbook(labels)
    _require(df, required, source)
    names = {
        **{k: HANDBOOK_COLUMNS[k] for k in HANDBOOK_COLUMNS if k in required or k in df.columns},
        **{k: v for k, v in HANDBOOK_OPTIONAL.items() if k in df.columns},
    }
    out = df[list(names)].rename(columns=names).reset_index(drop=True)
    out["tx_datetime"] = _to_datetime(out["tx_datetime"])
    return out


def _required_handbook(labels: bool) -> list[str]:
    return [c for c in HANDBOOK_COLUMNS if labels or c != "TX_FRAUD"]


def read_handbook(path: Path, labels: bool = True) -> pd.DataFrame:
    """The handbook's transactions table: a .csv/.csv.gz file, or a folder of them (by file name)."""
    frames = [next(_csv_frames(f, _required_handbook(labels))) for f in _handbook_files(Path(path))]
    return handbook_to_canonical(_concat(frames), str(path), labels)


def iter_handbook(path: Path, chunk_rows: int, labels: bool = True) -> Iterator[pd.DataFrame]:
    """read_handbook in pieces of at most `chunk_rows` rows, file after file: each column's type is inferred
    per piece (a stray text value makes its own piece's column text, which the gate then reports)."""
    for f in _handbook_files(Path(path)):
        for frame in _csv_frames(f, _required_handbook(labels), chunk_rows):
            yield handbook_to_canonical(frame, str(f), labels)


def _handbook_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted((f for f in path.iterdir() if f.is_file() and f.name.endswith(CSV_SUFFIXES)), key=lambda f: f.name)
    if not files:
        raise DataError(f"{path}: folder holds no .csv or .csv.gz file")
    return files


def read_ulb(path: Path, labels: bool = True) -> pd.DataFrame:
    """ULB's creditcard.csv (Time, V1..V28, Amount, Class); no customer or terminal ids in this format.

    labels=False (scoring new transactions): Class may be absent.
    """
    return next(iter_ulb(path, 0, labels))


def iter_ulb(path: Path, chunk_rows: int, labels: bool = True) -> Iterator[pd.DataFrame]:
    """read_ulb whole (chunk_rows 0) or in pieces of at most `chunk_rows` rows; ids count rows across pieces."""
    first = 0
    for df in _csv_frames(Path(path), [c for c in ULB_COLUMNS if labels or c != "Class"], chunk_rows):
        df = df.reset_index(drop=True)
        out = pd.DataFrame({"transaction_id": np.arange(first, first + len(df), dtype=np.int64)})
        first += len(df)
        out["tx_datetime"] = _seconds_to_datetime(df["Time"])
        out["tx_amount"] = df["Amount"]
        if "Class" in df:
            out["tx_fraud"] = df["Class"]
        for v in V_COLUMNS:
            out[v.lower()] = df[v]
        yield out


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack files as if they were one: a column read as text in any file is text in all.

    Otherwise a column numeric in one file and text in another becomes an object column of mixed
    Python types, which parquet cannot store; read as one file, pandas would have kept it as text.
    """
    if len(frames) == 1:
        return frames[0]
    text = {c for f in frames for c in f.columns if not pd.api.types.is_numeric_dtype(f[c])}
    frames = [f.astype({c: "str" for c in text if c in f.columns}) for f in frames]
    return pd.concat(frames, ignore_index=True)


def _csv_frames(path: Path, required: list[str], chunk_rows: int = 0) -> Iterator[pd.DataFrame]:
    """One CSV file as pandas infers it, whole (chunk_rows 0) or in pieces of at most chunk_rows rows, with the
    `required` columns; every way it can fail, in any piece, becomes a one-line DataError."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if not path.name.endswith(CSV_SUFFIXES):
        raise DataError(f"{path}: expected a .csv or .csv.gz file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")
    _check_text(path)
    rows = 0
    try:
        if chunk_rows:
            with pd.read_csv(path, chunksize=chunk_rows) as reader:
                for df in reader:
                    rows += len(df)
                    yield _columns(df, required, path)
        else:  # low_memory=False: one dtype inferred per column, not per block of rows
            df = pd.read_csv(path, low_memory=False)
            rows = len(df)
            if rows:
                yield _columns(df, required, path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty (no header line)") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (undecodable bytes)") from None
    except ValueError as e:  # pandas' ParserError and kin
        raise DataError(f"{path}: not valid CSV ({_first_line(e)})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # corrupt or truncated past the sniffed head
        raise DataError(f"{path}: cannot decompress ({_first_line(e)})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or _first_line(e)})") from None
    if not rows:
        raise DataError(f"{path}: no rows (header only)")


def _columns(df: pd.DataFrame, required: list[str], path: Path) -> pd.DataFrame:
    df.columns = [str(c).strip() for c in df.columns]
    _require(df, required, str(path))
    return df


def _check_text(path: Path) -> None:
    """Refuse binary content early: NUL bytes or invalid UTF-8 in the first 64 KiB (decompressed)."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                head = fh.read(_SNIFF_BYTES)
        else:
            with path.open("rb") as fh:
                head = fh.read(_SNIFF_BYTES)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a valid gzip file ({_first_line(e)})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or _first_line(e)})") from None
    if head.startswith(b"\x1f\x8b"):
        raise DataError(f"{path}: gzip-compressed data; name the file .csv.gz")
    if b"\x00" in head:
        raise DataError(f"{path}: binary data, not CSV text")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a cut multibyte char is fine
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (undecodable byte at position {e.start})") from None


def _require(df: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        found = ", ".join(str(c)[:40] for c in list(df.columns)[:8]) + (", ..." if len(df.columns) > 8 else "")
        raise DataError(f"{source}: missing required column(s): {', '.join(missing)} (found: {found})")


def _to_datetime(s: pd.Series) -> pd.Series:
    """datetime64[ns], naive; non-ISO-8601 or out-of-range values become NaT, tz-aware ones UTC.

    ISO 8601 (the handbook writes '2018-04-01 00:00:31') parses fast and the same way on every
    row, unlike pandas' guess from the first value or dateutil per element.
    """
    out = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601").dt.tz_convert(None)
    lo, hi = pd.Timestamp.min, pd.Timestamp.max  # the datetime64[ns] range
    return out.where((out >= lo) & (out <= hi)).astype("datetime64[ns]")


def _seconds_to_datetime(s: pd.Series) -> pd.Series:
    """ULB's Time (seconds since the first transaction) as a datetime; non-numeric -> NaT."""
    t = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    ok = np.isfinite(t) & (np.abs(t) < _MAX_ULB_SECONDS)
    ns = np.round(np.where(ok, t, 0) * 1e9).astype(np.int64)
    dt = ULB_EPOCH + ns.astype("timedelta64[ns]")
    dt[~ok] = np.datetime64("NaT")
    return pd.Series(dt, index=s.index)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
