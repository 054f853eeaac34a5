"""Recommender requests for the HTTP endpoint.

`{"items": [{"user_id": 1}, ...]}` -> each user's top-k (as `aiflow score recsys --source users`);
`{"items": [{"user_id": 1, "item_id": 50}, ...]}` -> a score per pair (a predicted rating for rating
models; as `--source pairs`). A request is one or the other. Batch scoring gives a user the model does
not know the popularity ranking and counts them; the endpoint answers such a request 422 naming the
user (or the item of a pair): a caller asking for one user's list should know it is not personal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from domains.common.serving import RequestError, error, records
from domains.recsys.params import RecsysParams

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
