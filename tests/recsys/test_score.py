"""`aiflow score recsys`: top-k for user ids (seen items excluded, unknown users on popularity), scores for
pairs, a MovieLens file with a shadow evaluation, and bad inputs, in a throwaway repo at a small size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import aiflow_in_process, digest, promoted_copy, run
from tests.recsys.conftest import small_recsys_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return promoted_copy(tmp_path_factory, "recsys", small_recsys_params())  # EASE is promoted at this size


@pytest.fixture(scope="module")
def ratings(repo) -> pd.DataFrame:
    return pd.read_parquet(repo / "data/recsys/prepare/ratings.parquet")


@pytest.fixture
def score(monkeypatch, capsys):
    """`aiflow score recsys <args>` on a repository, in this process."""

    def call(repo: Path, *args, check: bool = True):
        return aiflow_in_process(repo, monkeypatch, capsys, "score", "recsys", *args, check=check)

    return call


def test_top_k_for_user_ids_excludes_seen_items_and_falls_back_for_unknown_users(repo, ratings, tmp_path):
    users = np.unique(ratings["user_id"])
    file = tmp_path / "users.csv"
    pd.DataFrame({"user_id": [*users, 10_000_001]}).to_csv(file, index=False)
    proc = run(["aiflow", "score", "recsys", str(file), "--out", str(tmp_path / "s")], repo)  # the command line itself
    assert f"scored {len(users) + 1} of {len(users) + 1} rows with v1 (ease)" in proc.stdout
    top = pd.read_parquet(tmp_path / "s" / "predictions.parquet")
    assert (
        len(top) == 10 * (len(users) + 1)
        and top.groupby("user_id")["rank"].apply(list).map(lambda r: r == list(range(1, 11))).all()
    )
    seen = set(zip(*ratings.loc[~ratings["holdout"], ["user_id", "item_id"]].to_numpy().T))
    assert not any((u, i) in seen for u, i in zip(top["user_id"], top["item_id"]))
    unknown = top[top["user_id"] == 10_000_001]
    assert not unknown["known_user"].any()
    popular = ratings.loc[~ratings["holdout"], "item_id"].value_counts()
    counts = popular.reindex(unknown["item_id"]).to_numpy()
    assert (counts >= popular.iloc[9]).all() and (counts[:-1] >= counts[1:]).all()  # the 10 most rated, ties either way
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert "1 unknown user(s) got the popularity ranking" in manifest["notes"][0]
    assert manifest["shadow_metrics"] is None


def test_a_plain_list_of_ids_and_byte_identical_rescoring(repo, ratings, tmp_path, score):
    file = tmp_path / "ids.txt"
    file.write_text("\n".join(map(str, np.unique(ratings["user_id"])[:20])) + "\n")
    for name in ("a", "b"):
        score(repo, file, "--out", tmp_path / name)
    assert digest(tmp_path / "a" / "predictions.parquet") == digest(tmp_path / "b" / "predictions.parquet")
    assert len(pd.read_parquet(tmp_path / "a" / "predictions.parquet")) == 200


def test_a_movielens_file_is_scored_as_pairs_with_a_shadow_evaluation(repo, ratings, tmp_path, score):
    held = ratings[ratings["holdout"]]
    file = tmp_path / "u.data"
    held[["user_id", "item_id", "rating", "timestamp"]].to_csv(file, sep="\t", header=False, index=False)
    score(repo, file, "--source", "ml-100k", "--out", tmp_path / "s", "--model", "candidate")
    pairs = pd.read_parquet(tmp_path / "s" / "predictions.parquet")
    assert len(pairs) == len(held) and pairs["score"].notna().all()
    notes = json.loads((tmp_path / "s" / "manifest.json").read_text())["notes"]
    assert "ranking scores (not ratings)" in notes[0]  # EASE ranks: no RMSE is pretended


def test_a_rating_models_pair_scores_are_its_ratings_clipped_to_the_scale(repo, ratings):
    """SVD's pair scores are Surprise's own predictions (clipped to [1, 5], as evaluate's RMSE has them)."""
    import joblib

    from domains.recsys.score import INTERACTIONS, _score_pairs

    model_dir = repo / "data/recsys/train"
    seen = pd.read_parquet(model_dir / INTERACTIONS)
    pairs = ratings[ratings["holdout"]][["user_id", "item_id", "rating"]].reset_index(drop=True)
    scored = _score_pairs(model_dir, "svd", (1.0, 5.0), seen, pairs)
    algo = joblib.load(next(model_dir.glob("svd.*")))
    expected = np.array([algo.predict(u, i).est for u, i in zip(pairs["user_id"], pairs["item_id"])])
    known = scored.predictions["known_user"] & scored.predictions["known_item"]
    assert np.allclose(scored.predictions["score"][known], expected[known], atol=1e-9)
    assert scored.predictions["score"].between(1, 5).all() and "clipped to the scale [1, 5]" in scored.notes[0]
    assert scored.shadow_metrics is not None and scored.shadow_metrics["pairs_scored"] == int(known.sum())


@pytest.mark.parametrize("case", ["not_integers", "missing_item", "unknown_source", "empty"])
def test_bad_input_stops_with_one_line(repo, tmp_path, case, score):
    file = tmp_path / "batch.csv"
    extra: list[str] = []
    if case == "not_integers":
        file.write_text("user_id\n1\nalice\n")
        expected = "user_id:dtype"
    elif case == "missing_item":
        file.write_text("user_id,rating\n1,4\n")
        extra, expected = ["--source", "pairs"], "missing required column(s): item_id"
    elif case == "unknown_source":
        file.write_text("user_id\n1\n")
        extra, expected = ["--source", "netflix"], "unknown source 'netflix'"
    else:
        file.write_text("user_id\n")
        expected = "no rows"
    before = digest(file)
    proc = score(repo, file, "--out", tmp_path / "s", *extra, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr, proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert digest(file) == before and not (tmp_path / "s").exists()
