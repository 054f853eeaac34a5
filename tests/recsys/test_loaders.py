"""Loaders: the three MovieLens formats into the canonical table; bad files are a one-line DataError."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.common.errors import DataError
from domains.recsys.loaders import CANONICAL, read_movielens
from tests.conftest import ROOT

ML_100K = ROOT.parent / "shared" / "datasets" / "recommender" / "ml-100k"  # real data: optional

RATINGS = pd.DataFrame(
    {
        "user_id": [1, 1, 2, 3],
        "item_id": [10, 20, 10, 30],
        "rating": [4, 3, 5, 1],
        "timestamp": [881250949, 881250950, 891717742, 878887116],
    }
)
TITLES = {10: "Toy Story (1995)", 20: "GoldenEye (1995)", 30: "Café, Society (2016)"}


def write_release(folder: Path, source: str, ratings: pd.DataFrame = RATINGS) -> Path:
    """A folder holding the ratings and titles files of a MovieLens release, in its own format."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ratings.astype(str).to_numpy()
    if source == "ml-100k":
        (folder / "u.data").write_text("".join("\t".join(r) + "\n" for r in rows))
        (folder / "u.item").write_bytes(
            "".join(f"{i}|{t}|01-Jan-1995||http://x|0|1\n" for i, t in TITLES.items()).encode("latin-1")
        )
    elif source == "ml-1m":
        (folder / "ratings.dat").write_text("".join("::".join(r) + "\n" for r in rows))
        (folder / "movies.dat").write_bytes("".join(f"{i}::{t}::Comedy\n" for i, t in TITLES.items()).encode("latin-1"))
    else:
        ratings.set_axis(["userId", "movieId", "rating", "timestamp"], axis=1).to_csv(
            folder / "ratings.csv", index=False
        )
        pd.DataFrame({"movieId": list(TITLES), "title": list(TITLES.values()), "genres": "Comedy"}).to_csv(
            folder / "movies.csv", index=False
        )
    return folder


@pytest.mark.parametrize("source", ["ml-100k", "ml-1m", "ml-latest-small"])
def test_round_trip_with_titles(tmp_path, source):
    folder = write_release(tmp_path / source, source)
    ratings, titles = read_movielens(source, folder)
    assert list(ratings.columns) == CANONICAL
    pd.testing.assert_frame_equal(ratings.astype("int64"), RATINGS)
    assert dict(zip(titles["item_id"], titles["title"])) == TITLES  # latin-1 and quoted commas survive


def test_the_ratings_file_itself_or_its_folder(tmp_path):
    folder = write_release(tmp_path / "ml", "ml-100k")
    by_file, _ = read_movielens("ml-100k", folder / "u.data")
    by_folder, _ = read_movielens("ml-100k", folder)
    pd.testing.assert_frame_equal(by_file, by_folder)


def test_no_titles_file_means_no_titles(tmp_path):
    folder = write_release(tmp_path / "ml", "ml-100k")
    (folder / "u.item").unlink()
    assert read_movielens("ml-100k", folder)[1] is None


def test_values_are_not_fixed_by_the_loader(tmp_path):
    """Bad values reach the gate as read: that is where they are reported."""
    bad = RATINGS.astype(object)
    bad.loc[0, "user_id"], bad.loc[1, "rating"], bad.loc[2, "item_id"] = "abc", 11, 7.5
    ratings, _ = read_movielens("ml-100k", write_release(tmp_path / "ml", "ml-100k", bad))
    assert ratings.loc[0, "user_id"] == "abc" and ratings.loc[1, "rating"] == 11 and ratings.loc[2, "item_id"] == 7.5


@pytest.mark.parametrize(
    "source, content, expected",
    [
        ("ml-100k", b"", "file is empty (0 bytes)"),
        ("ml-100k", b"\n\n", "no rows"),
        ("ml-latest-small", b"userId,movieId,rating,timestamp\n", "no rows (header only)"),
        (
            "ml-100k",
            b"1,10,4,881250949\n2,10,5,891717742\n",
            "expected tab-separated u.data (user item rating timestamp), found comma-separated text",
        ),
        (
            "ml-1m",
            b"1\t10\t4\t881250949\n",
            "expected '::'-separated ratings.dat (UserID MovieID Rating Timestamp), found tab-separated",
        ),
        ("ml-latest-small", b"userId;movieId;rating;timestamp\n1;10;4;5\n", "expected comma-separated ratings.csv"),
        ("ml-100k", b"1\t10\t4\n2\t10\t5\n", "missing column(s) timestamp: line 1 has 3 of the 4 fields"),
        (
            "ml-latest-small",
            b"userId,movieId,timestamp\n1,10,5\n",
            "missing required column(s): rating (found: userId, movieId, timestamp)",
        ),
        ("ml-100k", b"1\t10\t4\t5\t9\n", "line 1 has 5 fields, expected 4"),
        ("ml-100k", b"1\t10\t4\t5\n2\t10\t5\t6\t7\n", "not a valid tab-separated u.data"),
        ("ml-100k", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data, not a text ratings file"),
        ("ml-100k", b"PK\x03\x04\x14\x00\x00\x00", "a zip archive; unzip it"),
    ],
)
def test_unreadable_files_are_one_line_errors(tmp_path, source, content, expected):
    name = {"ml-100k": "u.data", "ml-1m": "ratings.dat", "ml-latest-small": "ratings.csv"}[source]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_movielens(source, path)
    message = str(err.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_missing_file_and_folder_without_ratings(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_movielens("ml-100k", tmp_path / "nope.data")
    with pytest.raises(DataError, match="folder holds no u.data"):
        read_movielens("ml-100k", tmp_path)


def test_titles_with_non_integer_ids_are_an_error(tmp_path):
    folder = write_release(tmp_path / "ml", "ml-100k")
    (folder / "u.item").write_text("1|A|x\nabc|B|y\n")
    with pytest.raises(DataError, match="u.item: 1 item id"):
        read_movielens("ml-100k", folder)


@pytest.mark.skipif(not (ML_100K / "u.data").is_file(), reason=f"MovieLens 100K not found at {ML_100K}")
def test_real_movielens_100k():
    ratings, titles = read_movielens("ml-100k", ML_100K)
    assert len(ratings) == 100_000 and ratings["user_id"].nunique() == 943 and ratings["item_id"].nunique() == 1682
    assert np.issubdtype(ratings["rating"].dtype, np.integer)
    assert titles.set_index("item_id").loc[1, "title"] == "Toy Story (1995)"
