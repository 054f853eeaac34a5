"""Sentiment requests for the HTTP endpoint: `{"items": [{"text": "...", "id": "optional"}, ...]}`.

Each text becomes the document row the CSV reader makes of a CSV row (`_document`), then the scoring
columns the gate checks (`with_scoring_columns`). Text that is not UTF-8 never gets this far: the body's
JSON parser refuses bytes that are not UTF-8 and escapes of unpaired surrogates (422 `json_invalid`).
An item without an id is named `item <n>`; ids must be unique within a request (`item_id:unique`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from domains.sentiment.checks import with_scoring_columns
from domains.sentiment.loaders import _document, _frame
from domains.sentiment.params import SentimentParams

MAX_ITEMS = 1000  # documents per request
MAX_CHARS = 200_000  # characters per document (IMDB's longest review: about 14,000)
STRICT = ConfigDict(extra="forbid", strict=True)


class Document(BaseModel):
    model_config = STRICT
    text: str = Field(max_length=MAX_CHARS)
    id: str | None = Field(None, max_length=200, description="your name for it (default: item <n>)")


def request_model(p: SentimentParams) -> type[BaseModel]:
    return create_model(
        "SentimentRequest", __config__=STRICT, items=(list[Document], Field(min_length=1, max_length=MAX_ITEMS))
    )


def to_table(p: SentimentParams, body: Any, scratch: Path) -> pd.DataFrame:
    rows = [
        _document(item.id if item.id is not None else f"item {n}", None, None, item.text.encode("utf-8"))
        for n, item in enumerate(body.items)
    ]
    return with_scoring_columns(_frame(rows), p.data.classes)


def to_tables(p: SentimentParams, bodies: list[Any], scratch: Path) -> pd.DataFrame:
    """to_table for several requests in one conversion."""
    rows = [
        _document(item.id if item.id is not None else f"item {n}", None, None, item.text.encode("utf-8"))
        for body in bodies
        for n, item in enumerate(body.items)
    ]
    return with_scoring_columns(_frame(rows), p.data.classes)


def describe(p: SentimentParams, model_dir: Path, model: str) -> dict[str, Any]:
    negative, positive = p.data.classes
    return {
        "threshold": 0.5,
        "classes": list(p.data.classes),
        "decision": f"label '{positive}' when positive_probability >= 0.5, else '{negative}'",
    }


def onnx(p: SentimentParams, model_dir: Path, export_dir: Path, model: str, int8: bool) -> Any:
    """The champion's models from their graphs, fed as the export documents: the fastText graph the
    distinct n-grams' embedding rows (padded, int64), the linear ones the counts of the n-grams they read
    (float32). The ensemble is each member from its own graph, averaged by `score_batch` as the trained
    ensemble is; a member without a graph (TF-IDF + logistic regression is never exported) stops start-up in
    one line (onnx_predictor) rather than serving the members that convert: their mean is another model."""
    import joblib
    import torch

    from domains.common.serving import onnx_predictor
    from domains.sentiment.params import ENSEMBLE
    from domains.sentiment.train import TORCH_MODEL, model_file

    members: list[str] = list(p.train.ensemble) if model == ENSEMBLE else [model]
    feeds: dict[str, Callable[[Any], dict[str, np.ndarray]]] = {}
    for name in members:
        if name == TORCH_MODEL:
            saved = torch.load(model_file(model_dir, name), map_location="cpu", weights_only=True)
            feeds[name] = partial(_padded_feed, columns=saved["columns"].numpy(), rows=saved["rows"].numpy())
        else:
            columns = joblib.load(model_file(model_dir, name)).columns  # opened after the hash check
            feeds[name] = partial(_counts_feed, columns=columns)
    return onnx_predictor(export_dir, members, int8, feeds)


def _padded_feed(counts: Any, columns: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    from domains.sentiment.export import padded

    ids, lengths = padded(counts, columns, rows)
    return {"ids": ids, "lengths": lengths}


def _counts_feed(counts: Any, columns: np.ndarray) -> dict[str, np.ndarray]:
    return {"x": counts[:, columns].astype(np.float32).toarray()}
