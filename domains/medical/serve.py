"""Medical-image requests for the HTTP endpoint (base64 images in JSON; see domains/common/image_serving.py):
class, probability and p_<class> per image, as `aiflow score medical --source image-folder`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
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


def onnx(p: MedicalParams, model_dir: Path, export_dir: Path, model: str, int8: bool) -> Any:
    """The champion from its graph, fed as the export documents: the CNN the uint8 pixels (N, C, H, W), the
    pixel baselines the area-averaged pixels (float32); each graph gives P(second class)."""
    from domains.common.serving import onnx_predictor
    from domains.medical.train import CNN, baseline_features

    def feed(images: np.ndarray) -> dict[str, np.ndarray]:
        if model == CNN:
            return {"x": np.ascontiguousarray(images)}
        return {"x": baseline_features(images, p.train.baseline_size).astype(np.float32)}

    return onnx_predictor(export_dir, [model], int8, {model: feed})
