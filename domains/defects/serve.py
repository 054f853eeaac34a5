"""Defect-image requests for the HTTP endpoint (base64 images in JSON; see domains/common/image_serving.py):
anomaly_score, decision at the model's saved threshold and the anomaly map (a PNG, base64) per image,
as `aiflow score defects` writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from domains.common import image_serving
from domains.defects.params import DefectsParams
from domains.defects.routed import is_routed, routing_categories
from domains.defects.score import read_batch
from domains.defects.train import THRESHOLDS


def request_model(p: DefectsParams) -> type[BaseModel]:
    return image_serving.request_model("DefectsRequest")


def to_table(p: DefectsParams, body: Any, scratch: Path) -> pd.DataFrame:
    return image_serving.to_table(lambda folder: read_batch(p, folder, "mvtec"), body, scratch)


def respond(p: DefectsParams, predictions: pd.DataFrame, body: Any, scratch: Path) -> list[dict[str, Any]]:
    return image_serving.respond(predictions, scratch, maps=True)


def describe(p: DefectsParams, model_dir: Path, model: str) -> dict[str, Any]:
    routed = {"categories": routing_categories(model_dir)} if is_routed(model_dir) else {}
    return {
        "threshold": float(json.loads((model_dir / THRESHOLDS).read_text())[model]),
        "image_size": p.prepare.image_size,
        "decision": "1 (defective) when anomaly_score >= threshold",
        **routed,  # a model per category: each image is routed to its own by look
    }


def onnx(p: DefectsParams, model_dir: Path, export_dir: Path, model: str, int8: bool) -> Any:
    """The champion's graph fed as its export documents (uint8 pixels (N, C, H, W)): `predict(model, images)` ->
    (anomaly maps (N, H, W), image scores (N,)), both computed in the graph; the decision stays score >= the
    model's saved threshold. The patch Gaussian and PatchCore have no graph: start-up names them."""
    from domains.common.serving import onnx_predictor

    def feed(images: np.ndarray) -> dict[str, np.ndarray]:
        return {"x": np.ascontiguousarray(images)}

    return onnx_predictor(export_dir, [model], int8, {model: feed}, maps=True)
