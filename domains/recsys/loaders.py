"""Read MovieLens rating files into the canonical table the quality gate checks.

Canonical columns: user_id, item_id, rating, timestamp (seconds since 1970), as pandas read them.
Titles, when the release's item file sits next to the ratings, come back as a second table
(item_id, title) for the report.

Loaders parse structure only: values stay as pandas read them (text in an id column, NaN,
ratings of 0 or 11, duplicates) so that the gate sees and reports them. An unreadable file, a
file in the wrong separator or one that lacks columns raises DataError with one line naming it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from domains.common.errors import DataError

CANONICAL = ["user_id", "item_id", "rating", "timestamp"]
_SNIFF_BYTES = 64 * 1024
# Separators we can name when a file uses one other than its format's.
_SEPARATORS = {"\t": "tab", "::": "'::'", ",": "comma", ";": "semicolon", "|": "'|'", " ": "space"}


@dataclass(frozen=True)
class Format:
    """One MovieLens release's files: where ratings and titles are and how they are written."""

    ratings_file: str
    separator: str
    header: bool  # ratings.csv names its columns; u.data and ratings.dat do not
    columns: tuple[str, str, str, str]  # the file's names for user, item, rating, timestamp
    items_file: str
    items_separator: str
    items_encoding: str

    def describe(self) -> str:
        return f"{_SEPARATORS[self.separator]}-separated {self.ratings_file} ({' '.join(self.columns)})"


FORMATS: dict[str, Format] = {
    "ml-100k": Format("u.data", "\t", False, ("user", "item", "rating", "timestamp"), "u.item", "|", "latin-1"),
    "ml-1m": Format(
        "ratings.dat", "::", False, ("UserID", "MovieID", "Rating", "Timestamp"), "movies.dat", "::", "latin-1"
    ),
    "ml-latest-small": Format(
        "ratings.csv", ",", True, ("userId", "movieId", "rating", "timestamp"), "movies.csv", ",", "utf-8"
    ),
}


def read_movielens(source: str, path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The canonical ratings of a MovieLens release, and its titles when its item file is there.

    `path` is the ratings file itself or the release's folder (which must hold the ratings file).
    """
    fmt = FORMATS[source]
    path = Path(path)
    file = path / fmt.ratings_file if path.is_dir() else path
    if path.is_dir() and not file.is_file():
        raise DataError(f"{path}: folder holds no {fmt.ratings_file} (the {source} ratings file)")
    ratings = _read_ratings(file, fmt)
    items_file = file.parent / fmt.items_file
    return ratings, (read_titles(items_file, fmt) if items_file.is_file() else None)


def _read_ratings(file: Path, fmt: Format) -> pd.DataFrame:
    head = _sniff(file)
    first = next((line for line in head.decode("utf-8", "replace").splitlines() if line.strip()), "")
    if not first:
        raise DataError(f"{file}: no rows (blank lines only)")
    _check_first_line(file, fmt, first)
    try:
        raw = file.read_bytes()
        if fmt.separator == "::":  # pandas' C parser takes one-character separators only
            raw = raw.replace(b"::", b"\t")
        frame = pd.read_csv(
            io.BytesIO(raw),
            sep="\t" if fmt.separator == "::" else fmt.separator,
            header=0 if fmt.header else None,
            names=None if fmt.header else list(fmt.columns),
            encoding="utf-8",
            encoding_errors="replace",
            skip_blank_lines=True,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{file}: no rows") from None
    except ValueError as e:  # pandas' ParserError: a line with more fields than the first
        raise DataError(f"{file}: not a valid {fmt.describe()}: {_first_line(e)}") from None
    except OSError as e:
        raise DataError(f"{file}: cannot read ({e.strerror or _first_line(e)})") from None
    if fmt.header:
        frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataError(f"{file}: no rows (header only)")
    return frame[list(fmt.columns)].set_axis(CANONICAL, axis=1).reset_index(drop=True)


def _sniff(file: Path) -> bytes:
    """The first 64 KiB, after refusing what is not a ratings text file."""
    if not file.exists():
        raise DataError(f"{file}: file not found")
    if not file.is_file():
        raise DataError(f"{file}: not a file")
    if file.stat().st_size == 0:
        raise DataError(f"{file}: file is empty (0 bytes)")
    try:
        with file.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as e:
        raise DataError(f"{file}: cannot read ({e.strerror or _first_line(e)})") from None
    if head.startswith(b"PK\x03\x04"):
        raise DataError(f"{file}: a zip archive; unzip it and point data.path at the extracted folder")
    if head.startswith(b"\x1f\x8b"):
        raise DataError(f"{file}: gzip-compressed data; decompress it first")
    if b"\x00" in head:
        raise DataError(f"{file}: binary data, not a text ratings file")
    return head


def _check_first_line(file: Path, fmt: Format, line: str) -> None:
    """Wrong separator and missing columns, told apart on the first line (the header, if any)."""
    fields = [f.strip() for f in line.split(fmt.separator)]
    expected = len(fmt.columns)
    if len(fields) == 1:
        found = next((name for sep, name in _SEPARATORS.items() if sep != fmt.separator and sep in line.strip()), None)
        what = f"found {found}-separated text" if found else "found no separator"
        raise DataError(f"{file}: expected {fmt.describe()}, {what} (line 1: {_show(line)})")
    if fmt.header:
        missing = [c for c in fmt.columns if c not in fields]
        if missing:
            raise DataError(
                f"{file}: missing required column(s): {', '.join(missing)} "
                f"(found: {', '.join(f[:30] for f in fields[:8])})"
            )
    elif len(fields) < expected:
        missing = list(fmt.columns[len(fields) :])
        raise DataError(
            f"{file}: missing column(s) {', '.join(missing)}: line 1 has {len(fields)} of the "
            f"{expected} fields of a {fmt.describe()} (line 1: {_show(line)})"
        )
    elif len(fields) > expected:
        raise DataError(
            f"{file}: line 1 has {len(fields)} fields, expected {expected} ({fmt.describe()}; line 1: {_show(line)})"
        )


USER_FILES = {
    "ml-100k": ("u.user", ["user_id", "age", "gender"]),  # id|age|gender|occupation|zip
    "ml-1m": ("users.dat", ["user_id", "gender", "age"]),
}  # id::gender::age::occupation::zip


def read_users(source: str, path: Path) -> pd.DataFrame | None:
    """user_id, age, gender from u.user or users.dat next to the ratings, when the release has them (slices only)."""
    if source not in USER_FILES:
        return None
    name, names = USER_FILES[source]
    path = Path(path)
    file = (path if path.is_dir() else path.parent) / name
    if not file.is_file():
        return None
    try:
        raw = file.read_bytes().replace(b"::", b"|")
        frame = pd.read_csv(io.BytesIO(raw), sep="|", header=None, usecols=[0, 1, 2], names=names, encoding="latin-1")
    except (ValueError, OSError) as e:
        raise DataError(f"{file}: cannot read users ({_first_line(e)})") from None
    return (
        pd.DataFrame(
            {
                "user_id": pd.to_numeric(frame["user_id"], errors="coerce"),
                "age": pd.to_numeric(frame["age"], errors="coerce"),
                "gender": frame["gender"].astype(str).str.strip(),
            }
        )
        .dropna(subset=["user_id"])
        .astype({"user_id": "int64"})
    )


def read_titles(file: Path, fmt: Format) -> pd.DataFrame:
    """item_id, title from u.item, movies.dat or movies.csv (display only: titles are not gated)."""
    try:
        if fmt.items_separator == "::":
            raw = io.BytesIO(file.read_bytes().replace(b"::", b"\t"))
            frame = pd.read_csv(
                raw,
                sep="\t",
                header=None,
                usecols=[0, 1],
                names=["item_id", "title"],
                encoding=fmt.items_encoding,
                quoting=3,
            )  # titles hold quotes: read them as text
        elif fmt.items_separator == "|":
            frame = pd.read_csv(
                file,
                sep="|",
                header=None,
                usecols=[0, 1],
                names=["item_id", "title"],
                encoding=fmt.items_encoding,
                quoting=3,
            )
        else:
            frame = pd.read_csv(file, encoding=fmt.items_encoding, usecols=["movieId", "title"]).set_axis(
                ["item_id", "title"], axis=1
            )
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise DataError(f"{file}: cannot read titles ({_first_line(e)})") from None
    ids = pd.to_numeric(frame["item_id"], errors="coerce")
    bad = frame.loc[ids.isna() | (ids % 1 != 0), "item_id"]
    if len(bad):
        raise DataError(f"{file}: {len(bad)} item id(s) are not integers; e.g. {', '.join(map(_show, bad.head(3)))}")
    return (
        pd.DataFrame({"item_id": ids.astype("int64"), "title": frame["title"].astype(str)})
        .drop_duplicates("item_id")
        .reset_index(drop=True)
    )


def _show(value: object) -> str:
    text = repr(str(value))
    return text if len(text) <= 60 else text[:57] + "...'"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
