"""Every bad ratings file, fed through the real-data path in-process, stops before training with a
one-line reason per failed check, no traceback, the input untouched and no model (or, where params
say so, its bad rows are quarantined and the run goes on)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from domains.recsys.params import SyntheticParams
from domains.recsys.synthetic import generate_ratings
from tests.conftest import assert_stopped, digest, run_to_gate
from tests.recsys.conftest import small_recsys_params

FILES = {"ml-100k": "u.data", "ml-1m": "ratings.dat", "ml-latest-small": "ratings.csv"}


def ratings_frame() -> pd.DataFrame:
    return generate_ratings(SyntheticParams(n_users=80, n_items=100, n_ratings=2000), seed=1).ratings


def write_ratings(path: Path, frame: pd.DataFrame, source: str = "ml-100k") -> Path:
    if source == "ml-latest-small":
        frame.set_axis(["userId", "movieId", "rating", "timestamp"], axis=1).to_csv(path, index=False)
    else:
        sep = "\t" if source == "ml-100k" else "::"
        path.write_text("".join(sep.join(map(str, row)) + "\n" for row in frame.itertuples(index=False)))
    return path


def _run_to_gate(root: Path, source: str, data_file: Path, capsys, **gate) -> tuple[int, str]:
    return run_to_gate(root, "recsys", small_recsys_params(), source, data_file, capsys, **gate)


def _set(column: str, rows: list[int], value):
    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object})
        frame.loc[rows, column] = value
        return frame

    return mutate


BAD_VALUES = {
    "ratings of 0": (_set("rating", [3, 9], 0), "rating:in_scale [pandera]: 2 of {n} rows"),
    "ratings of 11": (_set("rating", [4], 11), "rating:in_scale [pandera]: 1 of {n} rows"),
    "non-numeric user ids": (_set("user_id", [5, 6], "u17"), "user_id:integer [pandera]: 2 of {n} rows"),
    "fractional item ids": (_set("item_id", [7], 12.5), "item_id:integer [pandera]: 1 of {n} rows"),
    "timestamps in 1970": (_set("timestamp", [8], 12), "timestamp:plausible [pandera]: 1 of {n} rows"),
    "a short line": (_set("timestamp", [2], ""), "timestamp:not_null [pandera]: 1 of {n} rows"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_stop_at_the_gate(case, recsys_root, capsys):
    mutate, expected = BAD_VALUES[case]
    frame = mutate(ratings_frame())
    data_file = write_ratings(recsys_root / "u.data", frame)
    before = digest(data_file)
    code, err = _run_to_gate(recsys_root, "ml-100k", data_file, capsys)
    assert_stopped(recsys_root, "recsys", data_file, before, code, err, expected.format(n=len(frame)))


@pytest.mark.parametrize(
    "source, content, expected",
    [
        ("ml-100k", b"", "file is empty (0 bytes)"),
        (
            "ml-100k",
            b"1,10,4,881250949\n2,10,5,891717742\n",
            "expected tab-separated u.data (user item rating timestamp), found comma-separated",
        ),
        ("ml-1m", b"1\t10\t4\t881250949\n", "expected '::'-separated ratings.dat"),
        ("ml-100k", b"1\t10\t4\n2\t10\t5\n", "missing column(s) timestamp"),
        ("ml-latest-small", b"userId,movieId,timestamp\n1,10,881250949\n", "missing required column(s): rating"),
        ("ml-latest-small", b"userId,movieId,rating,timestamp\n", "no rows (header only)"),
    ],
)
def test_unreadable_files_stop_at_acquire(source, content, expected, recsys_root, capsys):
    data_file = recsys_root / FILES[source]
    data_file.write_bytes(content)
    before = digest(data_file)
    code, err = _run_to_gate(recsys_root, source, data_file, capsys)
    assert_stopped(recsys_root, "recsys", data_file, before, code, err, expected)
    assert not (recsys_root / "data" / "recsys" / "validate").exists()  # stopped before the gate


def test_a_few_duplicate_pairs_are_quarantined_and_the_run_goes_on(recsys_root, capsys):
    frame = ratings_frame()
    frame = pd.concat([frame, frame.iloc[[10]].assign(rating=1)], ignore_index=True)
    data_file = write_ratings(recsys_root / "u.data", frame)
    before = digest(data_file)
    code, err = _run_to_gate(recsys_root, "ml-100k", data_file, capsys)
    assert code == 0, err
    validate_dir = recsys_root / "data" / "recsys" / "validate"
    quarantined = pd.read_parquet(validate_dir / "quarantine.parquet")
    assert len(quarantined) == 2 and set(quarantined["quarantine_reason"]) == {"pair:unique"}
    assert len(pd.read_parquet(validate_dir / "validated.parquet")) == len(frame) - 2
    assert digest(data_file) == before


def test_many_duplicate_pairs_block(recsys_root, capsys):
    frame = ratings_frame()
    frame = pd.concat([frame, frame.head(40)], ignore_index=True)  # 80 of 2040 rows: more than 1%
    data_file = write_ratings(recsys_root / "ratings.dat", frame, "ml-1m")
    before = digest(data_file)
    code, err = _run_to_gate(recsys_root, "ml-1m", data_file, capsys)
    assert_stopped(recsys_root, "recsys", data_file, before, code, err, "more than gate.max_quarantine_fraction=1.00%")


def test_duplicates_block_when_params_say_so(recsys_root, capsys):
    frame = ratings_frame()
    frame = pd.concat([frame, frame.iloc[[10]]], ignore_index=True)
    data_file = write_ratings(recsys_root / "ratings.csv", frame, "ml-latest-small")
    before = digest(data_file)
    code, err = _run_to_gate(recsys_root, "ml-latest-small", data_file, capsys, severity={"pair:unique": "block"})
    assert_stopped(recsys_root, "recsys", data_file, before, code, err, "pair:unique [pandera]: 2 of")


def test_out_of_scale_ratings_can_be_quarantined_instead(recsys_root, capsys):
    data_file = write_ratings(recsys_root / "u.data", _set("rating", [3], 0)(ratings_frame()))
    code, err = _run_to_gate(recsys_root, "ml-100k", data_file, capsys, severity={"rating:in_scale": "quarantine"})
    assert code == 0, err
    quarantined = pd.read_parquet(recsys_root / "data" / "recsys" / "validate" / "quarantine.parquet")
    assert quarantined["quarantine_reason"].tolist() == ["rating:in_scale"]
