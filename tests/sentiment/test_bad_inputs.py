"""Every bad input of the issue, through text-folder and csv in-process: it stops before training with
one line per failed check (naming the document), no traceback, the input untouched and no model;
or, where params say so, its bad documents are quarantined and the run goes on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import assert_stopped, digest, run_to_gate
from tests.sentiment.conftest import reviews, small_sentiment_params, write_csv, write_text_folder


def _run(root: Path, source: str, data: Path, capsys, **gate) -> tuple[int, str]:
    return run_to_gate(root, "sentiment", small_sentiment_params(), source, data, capsys, **gate)


def _folder(tmp: Path, docs: pd.DataFrame | None = None, **kwargs) -> Path:
    return write_text_folder(tmp / "reviews", reviews() if docs is None else docs, **kwargs)


def _first(folder: Path, split: str = "train", label: str = "pos") -> Path:
    return sorted((folder / split / label).glob("*.txt"))[0]


def _not_utf8(tmp: Path) -> tuple[str, Path]:
    folder = _folder(tmp)
    _first(folder).write_bytes("Un film très réussi.".encode("latin-1"))
    return "text-folder", folder


def _blank(tmp: Path) -> tuple[str, Path]:
    folder = _folder(tmp)
    _first(folder).write_text("  \n\t ")
    return "text-folder", folder


def _binary(tmp: Path) -> tuple[str, Path]:
    folder = _folder(tmp)
    _first(folder, "test", "neg").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    return "text-folder", folder


def _one_class(tmp: Path) -> tuple[str, Path]:
    docs = reviews()
    return "text-folder", _folder(tmp, docs[docs["label"] == "pos"])


def _same_review_in_train_and_test(tmp: Path) -> tuple[str, Path]:
    folder = _folder(tmp)
    _first(folder, "test", "pos").write_bytes(_first(folder, "train", "pos").read_bytes())
    return "text-folder", folder


def _csv_without_label(tmp: Path) -> tuple[str, Path]:
    path = tmp / "reviews.csv"
    reviews().rename(columns={"label": "sentiment"})[["text", "sentiment", "split"]].to_csv(path, index=False)
    return "csv", path


def _labels_outside_the_declared_set(tmp: Path) -> tuple[str, Path]:
    docs = reviews()
    docs.loc[[2, 5], "label"] = "positive"
    return "csv", write_csv(tmp / "reviews.csv", docs)


def _empty_folder(tmp: Path) -> tuple[str, Path]:
    (tmp / "reviews").mkdir()
    return "text-folder", tmp / "reviews"


def _no_test_folder(tmp: Path) -> tuple[str, Path]:
    docs = reviews()
    return "text-folder", _folder(tmp, docs[docs["split"] == "train"])


CASES = {
    "a file that is not UTF-8": (_not_utf8, "decoding:utf8 [pandera]: 1 of 100 rows fail utf8; e.g. train/pos/"),
    "a binary file posing as .txt": (_binary, "binary data, not a text document"),
    "a label folder that is the only one": (
        _one_class,
        "train:every_class_present [great_expectations]: 1 expected value(s) absent",
    ),
    "the same review in train and test": (
        _same_review_in_train_and_test,
        "split_leakage [pandera]: 1 of 100 rows fail split_leakage; e.g. test/pos/",
    ),
    "an empty document, blocked by params": (
        _blank,
        "text:not_blank [pandera]: 1 of 100 rows fail not_blank; e.g. train/pos/",
    ),
    "a CSV without its label column": (
        _csv_without_label,
        "missing required column(s): label (found: text, sentiment, split)",
    ),
    "labels outside the declared set": (
        _labels_outside_the_declared_set,
        "label:in_classes [pandera]: 2 of 100 rows fail isin(['neg', 'pos']); e.g. reviews.csv:row 3 (positive)",
    ),
    "an empty folder": (_empty_folder, "no label subfolders; expected one subfolder per label"),
    "a missing split": (_no_test_folder, "missing split folder(s): test"),
}
SEVERITY = {
    "an empty document, blocked by params": {"text:not_blank": "block"},
    "the same review in train and test": {"split_leakage": "block"},
}  # quarantined by default


@pytest.mark.parametrize("case", list(CASES))
def test_bad_documents_stop_before_training(case, sentiment_root, tmp_path, capsys):
    make, expected = CASES[case]
    (tmp_path / "input").mkdir()
    source, data = make(tmp_path / "input")
    before = digest(data)
    code, err = _run(sentiment_root, source, data, capsys, severity=SEVERITY.get(case, {}))
    assert_stopped(sentiment_root, "sentiment", data, before, code, err, expected)


def test_an_empty_document_is_quarantined_and_the_run_goes_on(sentiment_root, tmp_path, capsys):
    source, data = _blank(tmp_path / "input")
    code, err = _run(sentiment_root, source, data, capsys)
    assert code == 0, err
    validate = sentiment_root / "data" / "sentiment" / "validate"
    quarantined = pd.read_parquet(validate / "quarantine.parquet")
    assert quarantined["item_id"].str.startswith("train/pos/").all() and quarantined["quarantine_reason"].tolist() == [
        "text:not_blank"
    ]
    assert len(pd.read_parquet(validate / "validated.parquet")) == 99


def test_many_empty_documents_block(sentiment_root, tmp_path, capsys):
    folder = _folder(tmp_path / "input")
    for file in sorted((folder / "test" / "neg").glob("*.txt"))[:3]:
        file.write_text("")
    before = digest(folder)
    code, err = _run(sentiment_root, "text-folder", folder, capsys)
    assert_stopped(sentiment_root, "sentiment", folder, before, code, err, "quarantine: 3 of 100 rows (3.00%)")


def test_a_file_that_is_not_utf8_can_be_quarantined_instead(sentiment_root, tmp_path, capsys):
    source, data = _not_utf8(tmp_path / "input")
    code, err = _run(sentiment_root, source, data, capsys, severity={"decoding:utf8": "quarantine"})
    assert code == 0, err
    quarantined = pd.read_parquet(sentiment_root / "data" / "sentiment" / "validate" / "quarantine.parquet")
    assert quarantined["quarantine_reason"].tolist() == ["decoding:utf8"]


def test_markup_residue_and_odd_lengths_are_reported_not_warned(sentiment_root, tmp_path, capsys):
    folder = _folder(tmp_path / "input")
    _first(folder).write_text("A fine film.<br /><br />Really &amp; truly.")
    _first(folder, "test", "neg").write_text("bad " * 5000)
    code, err = _run(sentiment_root, "text-folder", folder, capsys)
    assert code == 0, err
    gate = pd.read_json(sentiment_root / "data" / "sentiment" / "validate" / "gate.json", typ="series")
    failed = {c["name"]: c for c in gate["checks"] if not c["passed"]}
    assert gate["verdict"] == "pass" and set(failed) == {"markup:no_residue", "n_tokens:typical_length"}
    assert {c["severity"] for c in failed.values()} == {"info"}
    assert failed["markup:no_residue"]["examples"][0].endswith(".txt (3)")


def test_undeclared_labels_let_through_by_params_are_left_out_of_training(sentiment_root, tmp_path, capsys):
    from aiflow.cli import main

    (tmp_path / "input").mkdir()
    source, data = _labels_outside_the_declared_set(tmp_path / "input")
    code, err = _run(
        sentiment_root,
        source,
        data,
        capsys,
        severity={"label:in_classes": "warn", "class_count_in_split:enough": "warn"},
    )
    assert code == 0, err
    assert main(["stage", "prepare", "sentiment"]) == 0
    prepared = sentiment_root / "data" / "sentiment" / "prepare"
    assert set(pd.read_parquet(prepared / "documents.parquet")["label"]) == {"neg", "pos"}
    assert pd.read_json(prepared / "profile.json", typ="series")["left_out"] == {
        "documents with an undeclared label": 2
    }
