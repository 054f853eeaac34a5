"""Recommender requests for the HTTP endpoint.

`{"items": [{"user_id": 1}, ...]}` -> each user's top-k (as `aiflow score recsys --source users`);
`{"items": [{"user_id": 1, "item_id": 50}, ...]}` -> a score per pair (a predicted rating for rating
models; as `--source pairs`). A request is one or the other. Batch scoring gives a user the model does
not know the popularity ranking and counts them; the endpoint answers such a request 422 naming the
user (or the item of a pair): a caller asking for one user's list should know it is not personal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from domains.common.serving import RequestError, error, records
from domains.recsys.params import RecsysParams

if TYPE_CHECKING:
    from domains.recsys.recommend import Scorer

MAX_ITEMS = 1000  # users or pairs per request
STRICT = ConfigDict(extra="forbid", strict=True)


class Entry(BaseModel):
    model_config = STRICT
    user_id: int
    item_id: int | None = Field(None, description="given: score this pair; absent: the user's top-k")


class _Request(BaseModel):
    model_config = STRICT
    items: list[Entry] = Field(min_length=1, max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def one_kind(self) -> _Request:
        if len({item.item_id is None for item in self.items}) > 1:
            raise ValueError("give item_id for every entry (pairs) or for none (top-k per user), not a mix")
        return self


def request_model(p: RecsysParams) -> type[BaseModel]:
    return create_model("RecsysRequest", __base__=_Request)


def to_table(p: RecsysParams, body: Any, scratch: Path) -> pd.DataFrame:
    """What read_batch gives a users or pairs CSV: the ids as text, converted (and checked) by the gate."""
    pairs = body.items[0].item_id is not None
    return pd.DataFrame(
        {
            "user_id": [str(i.user_id) for i in body.items],
            **({"item_id": [str(i.item_id) for i in body.items]} if pairs else {}),
        }
    )


def respond(p: RecsysParams, predictions: pd.DataFrame, body: Any, scratch: Path) -> list[dict[str, Any]]:
    unknown = [
        error(
            ["items", int(n), "user_id"],
            f"user {u} is unknown to the model (not in its training "
            "interactions); batch scoring gives such users the popularity ranking",
            "unknown_user",
        )
        for n, u in predictions.loc[~predictions["known_user"], "user_id"].groupby(level=0).first().items()
    ]
    if "known_item" in predictions:
        unknown += [
            error(["items", int(n), "item_id"], f"item {i} is unknown to the model", "unknown_item")
            for n, i in predictions.loc[~predictions["known_item"], "item_id"].items()
        ]
    if unknown:
        raise RequestError(sorted(unknown, key=lambda e: e["loc"][2]))
    if "rank" not in predictions:
        return records(predictions.drop(columns=["known_user", "known_item"]))
    return [
        {"user_id": int(group["user_id"].iloc[0]), "items": records(group[["rank", "item_id", "score"]])}
        for _, group in predictions.groupby(level=0, sort=True)
    ]


def describe(p: RecsysParams, model_dir: Path, model: str) -> dict[str, Any]:
    from domains.recsys.metrics import K

    return {"threshold": None, "k": K, "answers": "top-k item ids per user, or a score per (user, item) pair"}


def onnx(p: RecsysParams, model_dir: Path, export_dir: Path, model: str, int8: bool) -> Any:
    """The champion's scores from its export (ScoreOptions.predict): `predict(model, users)` -> a frame, a row per
    raw user id and a column per item of the export's <model>.item_ids.json, NaN rows for users it cannot score
    (score gives them the popularity ranking, counted, as for the trained model). The graphs are fed as
    preprocessing.json documents: MF and BPR a training user's row (<model>.user_ids.json), EASE, item-kNN and
    the VAE the user's 0/1 history over the model's items (the interactions saved with the model). Surprise's
    SVD and BaselineOnly are the factors' formula in numpy (the estimate before clipping, as the trained model's
    scores are; score clips pair ratings to the scale for both). No int8 graph is kept for a recommender: int8
    serves the float32 files."""
    from domains.common.export import PREPROCESSING
    from domains.common.modelstore import cached_load
    from domains.common.serving import onnx_predictor
    from domains.recsys.recommend import by_history, by_user_row, score_frame
    from domains.recsys.score import INTERACTIONS

    factors = json.loads((export_dir / PREPROCESSING).read_text())["surprise_factors"]["files"]
    if model in factors:
        scorer, files = _factor_scorer(export_dir / factors[model]), {model: factors[model]}
    else:
        graph = onnx_predictor(export_dir, [model], int8, {model: lambda feed: feed})  # names what was not exported
        item_ids = np.array(json.loads((export_dir / f"{model}.item_ids.json").read_text()), dtype=np.int64)
        user_ids = export_dir / f"{model}.user_ids.json"
        if user_ids.is_file():  # MF, BPR
            users = pd.Index(np.array(json.loads(user_ids.read_text()), dtype=np.int64))
            scorer = by_user_row(users, item_ids, lambda rows: graph(model, {"user": rows}))
        else:  # EASE, item-kNN, VAE
            seen = cached_load(model_dir / INTERACTIONS, pd.read_parquet)
            scorer = by_history(seen, item_ids, lambda history: graph(model, {"history": history}))
        files = graph.files  # type: ignore[attr-defined]

    def predict(name: str, users: np.ndarray) -> pd.DataFrame:
        return score_frame(scorer, users)

    predict.files = files  # type: ignore[attr-defined]  # which file serves, for /metadata
    return predict


def _factor_scorer(file: Path) -> Scorer:
    """Surprise's SVD or BaselineOnly from its exported factors: global_mean + bu[u] + bi[i] (+ pu[u] . qi[i])."""
    from domains.recsys.recommend import Scorer

    with np.load(file) as npz:
        arrays = {name: npz[name] for name in npz.files}
    users = pd.Index(arrays["user_ids"])

    def score(raw: np.ndarray) -> np.ndarray:
        u = users.get_indexer(raw)
        estimate = arrays["global_mean"] + arrays["bu"][u][:, None] + arrays["bi"][None, :]
        return estimate + arrays["pu"][u] @ arrays["qi"].T if "pu" in arrays else estimate

    return Scorer(arrays["item_ids"], lambda raw: users.get_indexer(raw) >= 0, score)
