"""Loaders: each published layout into one row per document; the input is only read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.common.errors import DataError
from domains.sentiment.loaders import COLUMNS, read_documents
from tests.conftest import ROOT
from tests.sentiment.conftest import (
    aclimdb_files,
    reviews,
    write_csv,
    write_files,
    write_sst2,
    write_tar_gz,
    write_text_folder,
)

CLASSES = ["neg", "pos"]
IMDB = ROOT.parent / "shared" / "datasets" / "nlp-sentiment" / "imdb-aclImdb-v1" / "aclImdb_v1_labeled.tar.gz"


def _read(source: str, path, classes=CLASSES, test_fraction: float = 0.25, seed: int = 0) -> pd.DataFrame:
    return read_documents(source, path, classes, test_fraction, seed)


def _by_text(frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    return {text: (split, label) for text, split, label in zip(frame["text"], frame["split"], frame["label"])}


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tar.gz"])
def test_aclimdb_folder_and_tar_gz(tmp_path, packed):
    docs = reviews()
    files = aclimdb_files(docs)
    path = write_tar_gz(tmp_path / "aclImdb_v1.tar.gz", files) if packed else write_files(tmp_path, files) / "aclImdb"
    frame = _read("aclimdb", path)
    assert list(frame.columns) == COLUMNS and len(frame) == len(docs)  # unsup, README, vocab and urls not read
    assert set(frame["item_id"]) == {
        name.removeprefix("aclImdb/") for name in files if "/pos/" in name or "/neg/" in name
    }
    row = frame[frame["item_id"].str.startswith("train/pos/")].iloc[0]
    assert row["text"].endswith("<br /><br />The end.")  # markup kept as read: the gate reports it
    stars = dict(zip(frame["item_id"], frame["stars"]))
    assert all(stars[i] == int(i.rsplit("_", 1)[1][:-4]) for i in stars)
    assert (frame.loc[frame["label"] == "pos", "stars"] >= 7).all() and (
        frame.loc[frame["label"] == "neg", "stars"] <= 4
    ).all()
    assert not (tmp_path / "aclImdb").exists() or not packed  # the archive is not unpacked


def test_aclimdb_maps_folders_onto_the_declared_classes(tmp_path):
    path = write_tar_gz(tmp_path / "a.tar.gz", aclimdb_files(reviews()))
    assert set(_read("aclimdb", path, ["negative", "positive"])["label"]) == {"negative", "positive"}


def test_sst2_quotes_are_text_and_dev_is_the_test_split(tmp_path):
    docs = reviews()
    frame = _read("sst2", write_sst2(tmp_path / "SST-2", docs))
    assert (frame["split"] == "test").sum() == (docs["split"] == "test").sum()
    assert frame["item_id"].iloc[0] == "train.tsv:line 2"  # the header is line 1
    assert frame["text"].str.contains('"quoted', regex=False).all()  # a bare quote does not start a quoted field
    expected = {
        f'{t.lower()} "quoted {i}': label
        for part in (docs[docs["split"] == s] for s in ("train", "test"))
        for i, (t, label) in enumerate(zip(part["text"], part["label"]))
    }
    assert dict(zip(frame["text"], frame["label"])) == expected  # 0 / 1 -> neg / pos


def test_text_folder_with_splits(tmp_path):
    docs = reviews()
    frame = _read("text-folder", write_text_folder(tmp_path / "reviews", docs))
    assert _by_text(frame) == {t: (s, lab) for t, s, lab in zip(docs["text"], docs["split"], docs["label"])}
    assert frame["item_id"].str.match(r"^(train|test)/(neg|pos)/\d+\.txt$").all()


def test_text_folder_without_splits_gets_a_seeded_stratified_split(tmp_path):
    docs = reviews(n_train=60, n_test=20)  # written without their splits: 40 + 40 documents
    frame = _read(
        "text-folder", write_text_folder(tmp_path / "reviews", docs, splits=False), test_fraction=0.25, seed=3
    )
    assert (frame["split"] == "test").sum() == 20
    assert frame.groupby("split")["label"].value_counts().loc["test"].tolist() == [10, 10]  # stratified
    again = _read("text-folder", tmp_path / "reviews", test_fraction=0.25, seed=3)
    pd.testing.assert_frame_equal(frame, again)
    other = _read("text-folder", tmp_path / "reviews", test_fraction=0.25, seed=4)
    assert not frame["split"].equals(other["split"])


def test_csv_with_and_without_split(tmp_path):
    docs = reviews()
    with_split = _read("csv", write_csv(tmp_path / "a.csv", docs))
    assert _by_text(with_split) == {t: (s, lab) for t, s, lab in zip(docs["text"], docs["split"], docs["label"])}
    assert with_split["item_id"].iloc[0] == "a.csv:row 1"
    without = _read("csv", write_csv(tmp_path / "b.csv", docs, split=False), test_fraction=0.5, seed=0)
    assert (without["split"] == "test").sum() == len(docs) // 2


def test_csv_keeps_quoted_commas_and_newlines(tmp_path):
    frame = pd.DataFrame(
        {
            "text": ['Good, "really" good.\nSecond line.', "Bad."] * 4,
            "label": ["pos", "neg"] * 4,
            "split": ["train"] * 4 + ["test"] * 4,
        }
    )
    read = _read("csv", write_csv(tmp_path / "q.csv", frame))
    assert read["text"].tolist() == frame["text"].tolist()


def test_bytes_that_are_not_utf8_are_kept_and_located(tmp_path):
    docs = reviews()
    root = write_text_folder(tmp_path / "reviews", docs)
    bad = sorted((root / "train" / "pos").glob("*.txt"))[0]
    bad.write_bytes(b"Caf\xe9 was good.")
    frame = _read("text-folder", root).set_index("item_id")
    row = frame.loc[bad.relative_to(root).as_posix()]
    assert row["decoding"] == "byte 0xe9 at offset 3 is not UTF-8" and row["text"] == "Caf\ufffd was good."
    assert (frame.drop(index=row.name)["decoding"] == "").all()


def test_a_utf8_byte_order_mark_is_not_text(tmp_path):
    frame = pd.DataFrame(
        {"text": ["Fine film."] * 4, "label": ["pos", "neg"] * 2, "split": ["train", "train", "test", "test"]}
    )
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False).encode())
    assert list(_read("csv", path)["text"]) == ["Fine film."] * 4


@pytest.mark.parametrize(
    "source, make, expected",
    [
        ("text-folder", lambda p: p.mkdir() or p, "no label subfolders"),
        (
            "text-folder",
            lambda p: write_text_folder(p, reviews()[lambda d: d["split"] == "train"]),
            "missing split folder(s): test",
        ),
        (
            "aclimdb",
            lambda p: write_tar_gz(
                p.with_suffix(".tar.gz"), {k: v for k, v in aclimdb_files(reviews()).items() if "/test/" not in k}
            ),
            "missing split(s): test",
        ),
        ("aclimdb", lambda p: p.mkdir() or p, "no reviews found"),
        ("sst2", lambda p: (write_sst2(p, reviews()) / "dev.tsv").unlink() or p, "missing split: no dev.tsv"),
        ("csv", lambda p: write_csv(p.with_suffix(".csv"), reviews().assign(split="train")), "missing split(s): test"),
        ("csv", lambda p: p.with_suffix(".csv").write_bytes(b"") or p.with_suffix(".csv"), "file is empty"),
    ],
)
def test_what_is_not_a_document_collection_stops_in_one_line(tmp_path, source, make, expected):
    path = make(tmp_path / "data")
    with pytest.raises(DataError) as err:
        _read(source, path)
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(not IMDB.is_file(), reason="IMDB (aclImdb v1) not in ../shared/datasets")
def test_the_real_aclimdb_archive():
    frame = _read("aclimdb", IMDB)
    assert len(frame) == 50_000
    assert frame.groupby(["split", "label"]).size().tolist() == [12_500] * 4
    assert (frame["decoding"] == "").all() and frame["stars"].between(1, 10).all()
    assert np.array_equal(np.sort(frame["stars"].unique()), [1, 2, 3, 4, 7, 8, 9, 10])
