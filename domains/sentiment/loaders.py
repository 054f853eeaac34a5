"""Read labelled documents in their published layouts into one table, one row per document.

Columns: item_id (where the document is: its path, or file and line / row), split (train, test,
val where the source has one), label (as the source names it; aclimdb's neg/pos and sst2's 0/1
become the declared classes), text (decoded; bytes that are not UTF-8 replaced), decoding ('' or
where UTF-8 decoding failed), stars (aclimdb's rating from the file name, else missing).

Loaders parse structure only: a document that does not decode, an empty one, a label outside
the declared set reach the gate as read, which names them. What cannot be a labelled document
collection (no documents, binary data, a missing split, a missing column) raises DataError in
one line naming the file or folder. The input is only ever read.
"""

from __future__ import annotations

import csv
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from domains.common.errors import DataError
from domains.common.items import SPLITS, stratified_split
from domains.sentiment.text import SNIFF_BYTES, decode, is_binary

COLUMNS = ["item_id", "split", "label", "text", "decoding", "stars"]
ACLIMDB_REVIEW = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")  # <id>_<stars>.txt
SST2_FILES = {"train": "train.tsv", "test": "dev.tsv"}  # GLUE hides test.tsv's labels: dev is the test split
ACLIMDB_ANY_REVIEW = re.compile(r"(?:^|/)(?:(pos|neg|unsup)/)?(\d+)_(\d+)\.txt$")  # scoring: labelled or not
REQUIRED_SPLITS = ("train", "test")  # every source has both; val is carved from train unless the source has one


def read_documents(source: str, path: Path, classes: list[str], test_fraction: float, seed: int) -> pd.DataFrame:
    """The documents of a real source ('aclimdb', 'sst2', 'text-folder', 'csv') at `path`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found")
    readers = {"aclimdb": read_aclimdb, "sst2": read_sst2, "text-folder": read_text_folder, "csv": read_csv}
    docs = readers[source](path, classes)
    if docs["split"].isna().all():  # no split in the source: a seeded, stratified one, independent of file order
        docs = docs.sort_values("item_id", kind="stable").reset_index(drop=True)
        test = stratified_split(docs["label"].to_numpy(), test_fraction, seed)
        docs["split"] = np.where(test, "test", "train")
    _require_splits(path, docs, REQUIRED_SPLITS)
    return docs[COLUMNS]


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"item_id": str, "text": str, "decoding": str, "stars": "Int64"})


def _document(item_id: str, split: str | None, label: str | None, data: bytes, stars: int | None = None) -> dict:
    text, problem = decode(data)
    return {"item_id": item_id, "split": split, "label": label, "text": text, "decoding": problem, "stars": stars}


def _file_document(
    item_id: str, split: str | None, label: str | None, data: bytes, where: str, stars: int | None = None
) -> dict:
    """A document that is a file of its own: binary content stops the run here, naming the file."""
    if is_binary(data):
        raise DataError(f"{where}: binary data, not a text document (a UTF-16 file? save it as UTF-8)")
    return _document(item_id, split, label, data, stars)


def _require_splits(path: Path, docs: pd.DataFrame, splits: tuple[str, ...]) -> None:
    found = set(docs["split"].dropna())
    missing = [s for s in splits if s not in found]
    if missing:
        raise DataError(f"{path}: missing split(s): {', '.join(missing)} (found: {', '.join(sorted(found)) or 'none'})")


# --- aclimdb: aclImdb/{train,test}/{pos,neg}/<id>_<stars>.txt, as a folder or its .tar.gz -----------


def read_aclimdb(path: Path, classes: list[str]) -> pd.DataFrame:
    """The labelled reviews of aclImdb v1 (train/unsup and the vocabulary files are not read)."""
    polarity = {"neg": classes[0], "pos": classes[1]}
    rows = []
    for name, data in _aclimdb_files(path):
        split, folder, _, stars = _parts(ACLIMDB_REVIEW, name)
        item_id = f"{split}/{folder}/{name.rsplit('/', 1)[-1]}"
        rows.append(_file_document(item_id, split, polarity[folder], data, f"{path}: {name}", int(stars)))
    if not rows:
        raise DataError(
            f"{path}: no reviews found; expected aclImdb/{{train,test}}/{{pos,neg}}/<id>_<stars>.txt "
            "(the folder or its .tar.gz)"
        )
    return _frame(rows)


def _aclimdb_files(path: Path, pattern: re.Pattern = ACLIMDB_REVIEW) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        for file in sorted(path.rglob("*.txt")):
            name = file.relative_to(path).as_posix()
            if pattern.search(name):
                yield name, file.read_bytes()
        return
    try:
        with tarfile.open(path, "r:*") as archive:  # read member by member: nothing is unpacked to disk
            for member in archive:
                content = archive.extractfile(member) if member.isfile() and pattern.search(member.name) else None
                if content is not None:
                    yield member.name, content.read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(
            f"{path}: not a readable tar archive of aclImdb ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from None


def _parts(pattern: re.Pattern, name: str) -> tuple[str, ...]:
    """The groups of a name that `_aclimdb_files` yielded because `pattern` matches it."""
    match = pattern.search(name)
    assert match is not None
    return match.groups()


def iter_aclimdb_batch(path: Path, classes: list[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Reviews to score in aclImdb's layout: any <id>_<stars>.txt under the folder (or .tar.gz), e.g. the 50,000
    of train/unsup/, in pieces of at most `chunk_rows` reviews (0: one piece). Under pos/ or neg/ a review keeps
    its label (and stars); elsewhere (unsup/) it has none."""
    polarity = {"neg": classes[0], "pos": classes[1]}

    def rows() -> Iterator[dict]:
        for name, data in _aclimdb_files(path, ACLIMDB_ANY_REVIEW):
            folder, _, stars = _parts(ACLIMDB_ANY_REVIEW, name)
            label = polarity.get(folder or "")
            yield _file_document(name, None, label, data, f"{path}: {name}", int(stars) if label else None)

    return _pieces(
        rows(),
        chunk_rows,
        f"{path}: no reviews found; expected aclImdb's <id>_<stars>.txt files (e.g. its train/unsup/ "
        "folder, or test/ with pos/ and neg/)",
    )


def _pieces(rows: Iterator[dict], chunk_rows: int, nothing: str) -> Iterator[pd.DataFrame]:
    """Documents as tables of at most `chunk_rows` rows (0: one table), so a batch is held a piece at a time;
    DataError(`nothing`) when there are none."""
    piece: list[dict] = []
    found = False
    for row in rows:
        piece.append(row)
        if len(piece) == chunk_rows:
            found = True
            yield _frame(piece)
            piece = []
    if piece:
        yield _frame(piece)
    elif not found:
        raise DataError(nothing)


# --- sst2: GLUE's SST-2 folder, train.tsv and dev.tsv, `sentence<TAB>label` with a header --------------


def read_sst2(path: Path, classes: list[str]) -> pd.DataFrame:
    """GLUE SST-2: quotes are literal characters (no CSV quoting); labels 0 / 1 become the declared classes."""
    if not path.is_dir():
        raise DataError(f"{path}: sst2 reads the GLUE SST-2 folder (train.tsv, dev.tsv), not a file")
    polarity = {"0": classes[0], "1": classes[1]}
    rows = []
    for split, name in SST2_FILES.items():
        file = path / name
        if not file.is_file():
            raise DataError(
                f"{path}: missing split: no {name} (GLUE SST-2's {'labelled dev set, the test split here' if split == 'test' else 'training set'})"
            )
        rows += _sst2_rows(file, split, polarity)
    return _frame(rows)


def _sst2_rows(file: Path, split: str, polarity: dict[str, str]) -> list[dict]:
    data = file.read_bytes()
    if is_binary(data):
        raise DataError(f"{file}: binary data, not a tab-separated text file")
    lines = data.splitlines()
    header = decode(lines[0])[0].strip().split("\t") if lines else []
    missing = [c for c in ("sentence", "label") if c not in header]
    if missing:
        raise DataError(
            f"{file}: missing required column(s): {', '.join(missing)} (header: {'<TAB>'.join(header)[:60] or 'empty file'})"
        )
    at_sentence, at_label = header.index("sentence"), header.index("label")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(b"\t")
        if len(fields) != len(header):
            raise DataError(f"{file}: line {number} has {len(fields)} tab-separated fields, the header {len(header)}")
        label = decode(fields[at_label])[0].strip()
        rows.append(_document(f"{file.name}:line {number}", split, polarity.get(label, label), fields[at_sentence]))
    return rows


# --- text-folder: <label>/*.txt, or {train,test}/<label>/*.txt --------------------------------------


def read_text_folder(path: Path, classes: list[str]) -> pd.DataFrame:
    """One subfolder per label holding one .txt per document, directly or under train/ and test/ (and val/)."""
    if not path.is_dir():
        raise DataError(f"{path}: text-folder reads a folder of label subfolders, not a file")
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    by_split = [f for f in folders if f.name in SPLITS]
    if by_split:
        missing = [s for s in REQUIRED_SPLITS if not (path / s).is_dir()]
        if missing:
            raise DataError(
                f"{path}: missing split folder(s): {', '.join(missing)} (a split layout needs train/ and test/)"
            )
        if len(by_split) != len(folders):
            others = sorted({f.name for f in folders} - set(SPLITS))
            raise DataError(
                f"{path}: mixes split folders with others ({', '.join(others)}); use train/<label>/ and test/<label>/"
            )
        labelled: list[tuple[str | None, Path]] = [
            (split.name, label)
            for split in by_split
            for label in sorted(split.iterdir())
            if label.is_dir() and not label.name.startswith(".")
        ]
    else:
        labelled = [(None, label) for label in folders]
    if not labelled:
        loose = sorted(path.glob("*.txt"))
        what = f"{len(loose)} .txt file(s) but no label subfolders" if loose else "no label subfolders"
        raise DataError(f"{path}: {what}; expected one subfolder per label (or train/<label>/ and test/<label>/)")
    rows = []
    for split, folder in labelled:
        for file in sorted(f for f in folder.glob("*.txt") if f.is_file()):
            rows.append(
                _file_document(file.relative_to(path).as_posix(), split, folder.name, file.read_bytes(), str(file))
            )
    if not rows:
        raise DataError(
            f"{path}: no .txt documents in its label folder(s) ({', '.join(sorted({f.name for _, f in labelled}))})"
        )
    return _frame(rows)


def iter_unlabelled_folder(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Scoring: every .txt under the folder, in pieces of at most `chunk_rows` documents (0: one piece); one in a
    subfolder is labelled by that folder's name (<label>/ or <split>/<label>/, as training reads them), one at
    the top has no label."""
    if not path.is_dir():
        raise DataError(f"{path}: text-folder reads a folder of label subfolders, not a file")
    files = sorted(
        f
        for f in path.rglob("*.txt")
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts)
    )
    rows = (
        _file_document(
            file.relative_to(path).as_posix(),
            None,
            file.parent.name if file.parent != path else None,
            file.read_bytes(),
            str(file),
        )
        for file in files
    )
    return _pieces(rows, chunk_rows, f"{path}: no .txt documents in the folder or its subfolders")


# --- csv: text,label[,split] -----------------------------------------------------------------------


def read_csv(path: Path, classes: list[str]) -> pd.DataFrame:
    """A CSV with columns text and label, and optionally split (train / val / test)."""
    return next(iter_csv(path, True, 0))


def iter_csv(path: Path, labels: bool, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """read_csv in pieces of at most `chunk_rows` rows (0: one piece), numbered across pieces.

    labels=False (scoring): the label column is optional, an empty label is none, a split column is ignored.
    """
    if not path.is_file():
        raise DataError(f"{path}: csv reads one CSV file, not a folder")
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)  # all is_binary looks at
    if not head.strip() and path.stat().st_size == len(head):
        raise DataError(f"{path}: file is empty")
    if is_binary(head):
        raise DataError(f"{path}: binary data, not a CSV file")
    # Undecodable bytes survive parsing as surrogates, so each row can say where its text went wrong;
    # newline="": line ends inside quoted text stay as they are.
    number = 0
    try:
        with (
            path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as text,
            pd.read_csv(
                text,
                dtype=str,
                keep_default_na=False,
                quoting=csv.QUOTE_MINIMAL,
                iterator=True,
                chunksize=chunk_rows or None,
            ) as reader,
        ):
            for frame in reader:
                frame.columns = [str(c).strip() for c in frame.columns]
                missing = [c for c in ("text", "label") if c not in frame.columns and (labels or c != "label")]
                if missing:
                    raise DataError(
                        f"{path}: missing required column(s): {', '.join(missing)} "
                        f"(found: {', '.join(frame.columns[:8])})"
                    )
                if frame.empty:
                    continue
                yield _csv_documents(frame, path.name, number, labels)
                number += len(frame)
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: not a valid CSV: {str(err).strip().splitlines()[0]}") from None
    if not number:
        raise DataError(f"{path}: no rows (header only)")


def _csv_documents(frame: pd.DataFrame, name: str, before: int, labels: bool) -> pd.DataFrame:
    """A piece of a CSV as documents; `before`: the rows of earlier pieces (ids count rows from 1)."""
    has_split = "split" in frame.columns and labels
    given = frame["label"] if "label" in frame.columns else [""] * len(frame)
    rows = []
    for number, (text, label, split) in enumerate(
        zip(frame["text"], given, frame["split"] if has_split else [None] * len(frame)), start=before + 1
    ):
        label = label.strip() if labels or label.strip() else None
        rows.append(
            _document(
                f"{name}:row {number}",
                split.strip().lower() if has_split else None,
                label,
                text.encode("utf-8", "surrogateescape"),
            )
        )
    return _frame(rows)
