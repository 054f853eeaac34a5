"""Image requests for the HTTP endpoint, shared by medical and defects.

`{"items": [{"image": "<base64 of a PNG/JPEG/... file>", "id": "optional name.png"}, ...]}`. The bytes
are written as files into the request's scratch folder and read by the domain's own `read_batch`, so
an image passes exactly the per-image facts and checks a file in a scored folder passes (decoding,
channels, size as trained). A multipart upload (`image` file parts) is turned into this same body by the
app (aiflow/serve.py), so it passes the same checks. Item ids are made unique across requests scored together
(serving.item_prefix) and given back as the caller named them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from domains.common.image_scoring import safe_name
from domains.common.images import IMAGE_SUFFIXES
from domains.common.items import ID
from domains.common.serving import RequestError, error, item_prefix, records

MAX_ITEMS = 256  # images per request
MAX_IMAGE_CHARS = 8 * 1024 * 1024  # base64 characters per image (6 MB of file)
STRICT = ConfigDict(extra="forbid", strict=True)


class ImageItem(BaseModel):
    model_config = STRICT
    image: str = Field(max_length=MAX_IMAGE_CHARS, description="the image file's bytes, base64")
    id: str | None = Field(None, max_length=200, description="your name for it (default: item <n>)")


def request_model(name: str) -> type[BaseModel]:
    return create_model(name, __config__=STRICT, items=(list[ImageItem], Field(min_length=1, max_length=MAX_ITEMS)))


def to_table(read: Callable[[Path], pd.DataFrame], body: Any, scratch: Path) -> pd.DataFrame:
    """Each image as a file `<n>.<suffix>` in scratch, read by the domain's reader, in request order."""
    scratch.mkdir(parents=True)
    errors = []
    for n, item in enumerate(body.items):
        try:
            data = base64.b64decode(item.image, validate=True)
        except (binascii.Error, ValueError):
            errors.append(error(["items", n, "image"], "not base64 (the image file's bytes, base64-encoded)", "base64"))
            continue
        suffix = Path(item.id or "").suffix.lower()
        (scratch / f"{n:06d}{suffix if suffix in IMAGE_SUFFIXES else '.png'}").write_bytes(data)
    if errors:
        raise RequestError(errors)
    table = read(scratch).reset_index(drop=True)  # sorted by file name: request order
    table[ID] = [
        f"{item_prefix(int(scratch.name))}{item.id if item.id is not None else f'item {n}'}"
        for n, item in enumerate(body.items)
    ]
    return table


def respond(predictions: pd.DataFrame, scratch: Path, maps: bool) -> list[dict[str, Any]]:
    """The prediction rows under the caller's ids; with `maps`, each item's map PNG as base64."""
    rows = records(predictions.assign(**{ID: [i.split("|", 1)[1] for i in predictions[ID]]}))
    if maps:
        for row, item in zip(rows, predictions[ID]):
            file = scratch / "maps" / f"{safe_name(item)}.png"
            row["anomaly_map_png"] = base64.b64encode(file.read_bytes()).decode() if file.is_file() else None
    return rows
