"""The recommender's acquire and prepare steps: a source in, the two evaluation protocols out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from domains.common.errors import PipelineError
from domains.recsys.checks import with_gate_columns
from domains.recsys.loaders import read_movielens, read_users
from domains.recsys.params import RecsysParams
from domains.recsys.split import assign_folds, data_profile, time_holdout
from domains.recsys.synthetic import generate_ratings

ITEMS = "items.parquet"  # item_id, title: acquire writes it when the source has titles
TRUTH = "truth.parquet"  # synthetic only: each rating's expected value and variance
RATINGS = "ratings.parquet"  # prepared: user_id, item_id, rating, timestamp, fold, holdout
NOISE_FLOOR = "noise_floor.json"
PROFILE = "profile.json"
USERS = "users.parquet"  # user_id, age, gender: acquire writes it when the release has u.user / users.dat (slices)


def acquire(p: RecsysParams, out_dir: Path) -> pd.DataFrame:
    """The canonical ratings table from the configured source (the source is only read)."""
    if p.data.source == "synthetic":
        data = generate_ratings(p.synthetic, p.seed)
        data.items.to_parquet(out_dir / ITEMS)
        data.truth.assign(noise_std=data.noise_std).to_parquet(out_dir / TRUTH)
        return with_gate_columns(data.ratings)
    ratings, titles = read_movielens(p.data.source, Path(p.data.path))
    if titles is not None:
        titles.to_parquet(out_dir / ITEMS)
    users = read_users(p.data.source, Path(p.data.path))
    if users is not None:
        users.to_parquet(out_dir / USERS)
    return with_gate_columns(ratings)


def prepare(p: RecsysParams, table: pd.DataFrame, acquire_dir: Path, out_dir: Path) -> None:
    q = p.prepare
    ratings = pd.DataFrame(
        {
            "user_id": table["user_id"].astype("int64"),
            "item_id": table["item_id"].astype("int64"),
            "rating": table["rating"].astype("float64"),
            "timestamp": table["timestamp"].astype("int64"),
        }
    )
    if len(ratings) < q.n_folds:
        raise PipelineError(f"prepare: {len(ratings)} ratings cannot be cut into prepare.n_folds={q.n_folds} folds")
    # A canonical order (pairs are unique after the gate): folds depend on the seed, not on file order.
    ratings = ratings.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    ratings["fold"] = assign_folds(len(ratings), q.n_folds, p.seed)
    ratings["holdout"] = time_holdout(ratings, q.holdout_per_user, q.min_train_ratings)
    if not ratings["holdout"].any():
        raise PipelineError(
            f"prepare: no user has the {q.holdout_per_user} + {q.min_train_ratings} ratings a top-k "
            "hold-out needs (prepare.holdout_per_user + prepare.min_train_ratings)"
        )
    ratings.to_parquet(out_dir / RATINGS)
    for extra in (ITEMS, USERS):
        if (acquire_dir / extra).is_file():
            shutil.copy(acquire_dir / extra, out_dir / extra)
    if (acquire_dir / TRUTH).is_file():
        floor = noise_floor(ratings, pd.read_parquet(acquire_dir / TRUTH))
        (out_dir / NOISE_FLOOR).write_text(json.dumps(floor, indent=2))
    profile = data_profile(ratings, p.gate.min_user_ratings, p.gate.min_item_ratings)
    profile["holdout"] = {
        "users": int(ratings.loc[ratings["holdout"], "user_id"].nunique()),
        "ratings": int(ratings["holdout"].sum()),
    }
    profile["fold_sizes"] = ratings["fold"].value_counts().sort_index().tolist()
    # The declared scale travels with the data: training reads it here, so no other gate param retrains it.
    profile["scale"] = [p.gate.rating_min, p.gate.rating_max]
    (out_dir / PROFILE).write_text(json.dumps(profile, indent=2))


def rating_scale(prepared_dir: Path) -> tuple[float, float]:
    """The rating scale declared when the data was prepared (recsys.gate.rating_min, rating_max)."""
    low, high = json.loads((prepared_dir / PROFILE).read_text())["scale"]
    return float(low), float(high)


def noise_floor(ratings: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """The best achievable errors on these ratings, from the generator's known model.

    floor_rmse = sqrt(mean Var[r | latent]) is the expected RMSE of the best possible predictor
    (the expected rating); oracle_* are that predictor's errors on the ratings actually drawn.
    """
    known = ratings.merge(truth, on=["user_id", "item_id"], how="inner", validate="one_to_one")
    error = known["expected_rating"].to_numpy() - known["rating"].to_numpy()
    return {
        "noise_std": float(truth["noise_std"].iloc[0]),
        "floor_rmse": float(np.sqrt(known["rating_variance"].mean())),
        "oracle_rmse": float(np.sqrt(np.mean(error**2))),
        "oracle_mae": float(np.mean(np.abs(error))),
        "ratings": len(known),
    }
