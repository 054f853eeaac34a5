"""Score with a trained recommender: top-k lists for user ids, or a score for (user, item) pairs.

The interactions the models learned from (every rating but the top-k hold-out) are saved with them at
training time (`interactions.parquet`): they say what each user has seen (never recommended again) and
are the rows the item-based models score a user from; the training data is not read again. Users the
model does not know get the popularity ranking and are counted. Top-k runs a block of users at a time
as one matrix product (`recommend`), never a loop over pairs.

Inputs: `users` (a CSV with a `user_id` column, or one id per line), `pairs` (a CSV with user_id, item_id
and optionally rating), or a MovieLens ratings file (`ml-100k`, `ml-latest-small`, `ml-1m`) as pairs with
ratings, which also gives a shadow evaluation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from domains.common.contract import Reference, Scored, ScoreOptions
from domains.common.errors import DataError
from domains.common.gate import GateSuite
from domains.common.modelstore import cached_load
from domains.recsys.loaders import FORMATS, read_movielens
from domains.recsys.metrics import K
from domains.recsys.params import RecsysParams
from domains.recsys.pipeline import RATINGS
from domains.recsys.recommend import Scorer, exported_scorer, load_scorer, recommend, sample_users
from domains.recsys.train import ranking_models, rating_models

SOURCES = ("users", "pairs", *FORMATS)
INTERACTIONS = "interactions.parquet"  # saved with the models: what they learned from
REFERENCE_USERS = (
    2000  # held-out users whose top-1 scores make the drift reference (recsys.evaluate.topk_max_users's default)
)


def read_batch(p: RecsysParams, path: Path, source: str) -> pd.DataFrame:
    if source in FORMATS:
        ratings, _ = read_movielens(source, path)
        return ratings[["user_id", "item_id", "rating"]]
    if path.is_dir():
        raise DataError(f"{path}: a folder; {source} reads one CSV file")
    try:
        head = path.open(encoding="utf-8").readline()
        if source == "users" and "user_id" not in head:
            frame = pd.read_csv(path, header=None, names=["user_id"], dtype=str, skip_blank_lines=True)
        else:
            frame = pd.read_csv(path, dtype=str)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError) as err:
        raise DataError(f"{path}: not a {source} CSV ({str(err).splitlines()[0]})") from None
    needed = ["user_id"] if source == "users" else ["user_id", "item_id"]
    missing = [c for c in needed if c not in frame]
    if missing:
        raise DataError(
            f"{path}: missing required column(s): {', '.join(missing)} (found: {', '.join(map(str, frame.columns[:6]))})"
        )
    keep = needed + (["rating"] if source == "pairs" and "rating" in frame else [])
    return frame[keep]  # as text: the gate's schema converts, and names what does not convert


def scoring_suite(p: RecsysParams) -> GateSuite:
    """The ratings contract's id and scale rules; nothing that needs a whole training set."""
    c = p.gate
    ids = {
        "user_id": pa.Column("int64", pa.Check.ge(0, name="non_negative")),
        "item_id": pa.Column("int64", pa.Check.ge(0, name="non_negative"), required=False),
        "rating": pa.Column(
            "float64", pa.Check.in_range(c.rating_min, c.rating_max, name="in_scale"), required=False, nullable=True
        ),
    }
    return GateSuite(
        pa.DataFrameSchema(ids, coerce=True, strict=False),
        severities={"user_id:non_negative": "quarantine"},
        id_column="user_id",
    )


def reference(p: RecsysParams, prepared_dir: Path, train_dir: Path) -> Reference:
    """Saves the models' interactions next to them; drift columns of users and pairs; each model's top-1 scores."""
    ratings = pd.read_parquet(prepared_dir / RATINGS)
    seen = ratings.loc[~ratings["holdout"], ["user_id", "item_id", "rating"]].reset_index(drop=True)
    seen.to_parquet(train_dir / INTERACTIONS)
    frame = _drift_frame(seen, users=np.unique(seen["user_id"]), pairs=seen)
    # A fixed sample size, not evaluate.topk_max_users: training (which saves this) reads no evaluate param.
    users = sample_users(ratings[ratings["holdout"]], REFERENCE_USERS, p.seed)
    scores = {
        name: recommend(train_dir, name, seen, users, "cpu", k=1)[1][:, 0]
        for name in [*rating_models(p), *ranking_models(p)]
        if name not in p.train.surprise_models
    }
    return Reference(frame, scores)


def _drift_frame(
    seen: pd.DataFrame, users: np.ndarray | None = None, pairs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per user: known, activity; per pair: known user and item, item popularity, rating (columns NaN-padded)."""
    activity = seen["user_id"].value_counts()
    popularity = seen["item_id"].value_counts()
    columns: dict[str, pd.Series] = {}
    if users is not None:
        columns["user_known"] = pd.Series(np.isin(users, activity.index).astype(np.int64))
        columns["user_activity"] = pd.Series(activity.reindex(users, fill_value=0).to_numpy(np.float64))
    if pairs is not None:
        columns["pair_item_known"] = pd.Series(pairs["item_id"].isin(popularity.index).to_numpy().astype(np.int64))
        columns["pair_item_popularity"] = pd.Series(
            popularity.reindex(pairs["item_id"], fill_value=0).to_numpy(np.float64)
        )
        if "rating" in pairs and pairs["rating"].notna().any():
            columns["rating"] = pd.Series(pairs["rating"].to_numpy(np.float64))
    return pd.DataFrame(columns)


def score_batch(p: RecsysParams, model_dir: Path, model: str, table: pd.DataFrame, options: ScoreOptions) -> Scored:
    seen = cached_load(model_dir / INTERACTIONS, pd.read_parquet)
    # the endpoint's ONNX runtime: the model's scores from its export (serve.onnx), else the trained model's
    predict = options.predict
    scorer = exported_scorer(lambda users: predict(model, users)) if predict is not None else None
    if "item_id" in table:
        scale = (p.gate.rating_min, p.gate.rating_max) if model in rating_models(p) else None
        return _score_pairs(model_dir, model, scale, seen, table, scorer)
    users = table["user_id"].to_numpy(np.int64)
    items, scores = recommend(model_dir, model, seen, users, "cpu", k=K, scorer=scorer)
    known = np.isin(users, seen["user_id"].to_numpy())
    predictions = pd.DataFrame(
        {
            "user_id": np.repeat(users, K),
            "rank": np.tile(np.arange(1, K + 1), len(users)),
            "item_id": items.ravel(),
            "score": scores.ravel(),
            "known_user": np.repeat(known, K),
        },
        index=np.repeat(table.index.to_numpy(), K),
    )
    notes = [
        f"top-{K} of {model} for {len(users)} user(s), items seen in training excluded; "
        f"{int((~known).sum())} unknown user(s) got the popularity ranking"
    ]
    return Scored(predictions, _drift_frame(seen, users=users), scores[:, 0], None, notes)


def _score_pairs(
    model_dir: Path,
    model: str,
    scale: tuple[float, float] | None,
    seen: pd.DataFrame,
    table: pd.DataFrame,
    scorer: Scorer | None = None,
) -> Scored:
    """Each pair's score from the model; NaN where user or item is unknown. A rating model's (`scale`: the rating
    scale) is its predicted rating, clipped to the scale as Surprise's predict and evaluate's RMSE clip it."""
    scorer = scorer or load_scorer(model_dir, model, seen, "cpu")
    users, items = table["user_id"].to_numpy(np.int64), table["item_id"].to_numpy(np.int64)
    unique, inverse = np.unique(users, return_inverse=True)
    known_user, block = scorer.known_scores(unique)  # one row per known user: a matrix product, not a loop over pairs
    column = pd.Index(scorer.item_ids).get_indexer(items)
    score = np.full(len(table), np.nan)
    rows = np.flatnonzero(known_user)
    if len(rows):
        position = np.full(len(unique), -1)
        position[rows] = np.arange(len(rows))
        ok = (position[inverse] >= 0) & (column >= 0)
        score[ok] = block[position[inverse][ok], column[ok]]
    if scale is not None:
        score = np.clip(score, scale[0], scale[1])  # NaN stays NaN
    predictions = pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "score": score,
            "known_user": known_user[inverse],
            "known_item": column >= 0,
        },
        index=table.index,
    )
    notes = [
        f"pairs scored by {model}: "
        + (
            f"predicted ratings, clipped to the scale [{scale[0]:g}, {scale[1]:g}]"
            if scale is not None
            else "ranking scores (not ratings)"
        ),
        f"{int(np.isnan(score).sum())} pair(s) with an unknown user or item have no score",
    ]
    shadow = None
    if scale is not None and "rating" in table and table["rating"].notna().any():
        scored = ~np.isnan(score) & table["rating"].notna().to_numpy()
        error = score[scored] - table["rating"].to_numpy(np.float64)[scored]
        shadow = {
            "pairs_scored": int(scored.sum()),
            "rmse": float(np.sqrt(np.mean(error**2))) if scored.any() else float("nan"),
            "mae": float(np.mean(np.abs(error))) if scored.any() else float("nan"),
        }
    return Scored(predictions, _drift_frame(seen, pairs=table), None, shadow, notes)
