"""Medical-image requests for the HTTP endpoint (base64 images in JSON; see domains/common/image_serving.py):
class, probability and p_<class> per image, as `aiflow score medical --source image-folder`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from domains.common import image_serving
from domains.medical.params import MedicalParams
from domains.medical.score import read_batch


def request_model(p: MedicalParams) -> type[BaseModel]:
    return image_serving.request_model("MedicalRequest")


def to_table(p: MedicalParams, body: Any, scratch: Path) -> pd.DataFrame:
    return image_serving.to_table(lambda folder: read_batch(p, folder, "image-folder"), body, scratch)


def respond(p: MedicalParams, predictions: pd.DataFrame, body: Any, scratch: Path) -> list[dict[str, Any]]:
    return image_serving.respond(predictions, scratch, maps=False)


def describe(p: MedicalParams, model_dir: Path, model: str) -> dict[str, Any]:
    return {
        "threshold": None,
        "classes": list(p.data.classes),
        "image_size": p.prepare.image_size,
        "decision": "class: the most probable one",
    }
