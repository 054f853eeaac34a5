"""Defect models as ONNX: uint8 pixels in, the anomaly `map` and the image `score` out, both computed in the
graph as evaluate and scoring compute them (the model's map, then metrics.image_scores' box filter and
maximum, reimplemented in torch by _ImageScore). Each model keeps its own threshold (a quantile of held-out
good images' scores), so parity decides at that one. The torch models convert (segmenter; DRAEM when
trained); the patch Gaussian (scikit-learn PCA and numpy distances) and PatchCore (its map ends in
scipy's Gaussian filter) are not torch graphs, and a segmenter with a tile bank (prepare.tiles) reads a second
input, each image's tiles: they are named with the reason. int8 for the CNNs is static
QDQ calibrated on training images (dynamic would give ConvInteger: onnxruntime #12558), of the convolutions
only: quantizing a model per category's route (thumbnail distances, argmin) misroutes images (synthetic
default: AUROC -2.2 points with every op, -0.3 with convolutions only)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from domains.common.export import Convertible, Exportable, from_torch, image_layout
from domains.common.items import LABEL, SPLIT
from domains.defects.draem import Draem
from domains.defects.loaders import GOOD
from domains.defects.memory_bank import nearest_distances
from domains.defects.neighbours import patch_features_of
from domains.defects.params import DefectsParams
from domains.defects.pipeline import IMAGES, ITEMS
from domains.defects.routed import Routed, RoutedMap, is_routed, routing_categories
from domains.defects.segmenter import Segmenter
from domains.defects.train import (
    BASELINE,
    DRAEM,
    PATCHCORE,
    SEGMENTER,
    THRESHOLDS,
    load_model,
    model_image_scores,
    needs_tiles,
    score_maps,
)

TILED = (
    "its score also reads each image's aspect-kept tiles (prepare.tiles): a second input, of another length "
    "than the images, which the graph does not take; score it with `aiflow score`"
)
CALIBRATION_IMAGES = 256  # training images the int8 models' activation ranges are measured on
CHUNK = 32  # test images per onnxruntime call: a map and a CNN's activations per image
NOT_TORCH = {
    BASELINE: "scikit-learn PCA and numpy Mahalanobis distances, not a torch module (no ONNX graph is built for it)",
    PATCHCORE: "its map ends in scipy.ndimage.gaussian_filter after the nearest-neighbour search, not a torch op",
}


def pool_side(pool: float, height: int, width: int) -> int:
    """The box filter's side image_scores uses."""
    return max(1, int(round(pool * min(height, width))))


class _ImageScore(torch.nn.Module):
    """metrics.image_scores in torch: scipy's uniform_filter (mode 'nearest': edge values repeated; an even
    side reaches one pixel further back than forward), then each map's maximum."""

    def __init__(self, pool: float):
        super().__init__()
        self.pool = pool

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        side = pool_side(self.pool, maps.shape[-2], maps.shape[-1])
        if side > 1:
            before, after = side // 2, side - 1 - side // 2
            padded = F.pad(maps[:, None], (before, after, before, after), mode="replicate")
            maps = F.avg_pool2d(padded, side, stride=1)[:, 0]
        return maps.flatten(1).amax(1)


class _MapAndScore(torch.nn.Module):
    """uint8 images (N, C, H, W) -> (anomaly map (N, H, W), image score (N,)); `added`: a term added to the
    score (the segmenter's neighbour distance)."""

    def __init__(self, anomaly_map: torch.nn.Module, pool: float, added: torch.nn.Module | None = None):
        super().__init__()
        self.anomaly_map, self.score, self.added = anomaly_map, _ImageScore(pool), added

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.anomaly_map(x)
        scores = self.score(maps)
        return maps, scores if self.added is None else scores + self.added(x)


class _NeighbourTerm(torch.nn.Module):
    """neighbours.with_neighbours' added term for one batch: the distance maps' image score, centred and scaled."""

    bank: torch.Tensor

    def __init__(self, model: Segmenter, pool: float):
        super().__init__()
        assert model.neighbours is not None
        self.model, self.score = model, _ImageScore(pool)
        self.register_buffer("bank", model.neighbours.features)
        self.mean, self.scale = model.neighbours.mean, model.neighbours.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distance = nearest_distances(self.bank, patch_features_of(self.model, x))
        maps = F.interpolate(distance, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return self.scale * (self.score(maps) - self.mean)


class _SegmenterMap(torch.nn.Module):
    """segmenter.anomaly_maps for one batch."""

    def __init__(self, model: Segmenter):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.probabilities_and_features(x)[0]


class _DraemMap(torch.nn.Module):
    """draem.draem_maps for one batch: the discriminative network's probability at the input's size."""

    def __init__(self, model: Draem):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)[1].float()
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)[:, 0]


MAPS: dict[str, Callable[[Any], torch.nn.Module]] = {SEGMENTER: _SegmenterMap, DRAEM: _DraemMap}


def export_models(p: DefectsParams, model_dir: Path, prepared_dir: Path) -> Exportable:
    items = pd.read_parquet(prepared_dir / ITEMS)
    split = items[SPLIT].to_numpy()
    images = np.load(prepared_dir / IMAGES, mmap_mode="r")
    test = np.ascontiguousarray(images[np.flatnonzero(split == "test")])
    train = np.ascontiguousarray(images[np.flatnonzero(split == "train")])
    calibration = train[np.random.default_rng(p.seed).permutation(len(train))[:CALIBRATION_IMAGES]]
    thresholds: dict[str, float] = json.loads((model_dir / THRESHOLDS).read_text())
    pool = p.train.score_pool
    models, not_converted = [], {}
    for name, threshold in thresholds.items():  # the models trained, in training order
        if name not in MAPS:
            not_converted[name] = NOT_TORCH.get(name, "not a torch model")
            continue
        model = load_model(model_dir, name)  # opened after modelstore checked its hash
        if needs_tiles(model):
            not_converted[name] = TILED
            continue
        maps = score_maps(name, model, test)  # as evaluate computed them
        to_map = RoutedMap(model, MAPS[name]) if isinstance(model, Routed) else MAPS[name](model)
        banked = isinstance(model, Segmenter) and model.neighbours is not None
        graph = _MapAndScore(to_map, pool, _NeighbourTerm(model, pool) if banked else None).eval()
        models.append(
            Convertible(
                name,
                "torch",
                _converter(graph, torch.from_numpy(test[:2])),
                {"x": test},
                model_image_scores(model, test, maps, pool),
                "score",
                quantize="static",
                calibration={"x": calibration},
                threshold=float(threshold),
                map_output="map",
                map_reference=maps,
                chunk=CHUNK,
                units=_units(model, test),
                quantize_ops=("Conv",),  # the networks' compute; a route's distances and argmin stay exact
                float_first_convs=True,  # each network's stem: -1.03 -> -0.31 AUROC points on the default's test
            )
        )
    channels, side = test.shape[1], test.shape[-1]
    candidate = p.evaluate.candidate if p.evaluate.candidate in thresholds else next(iter(thresholds))
    preprocessing = {
        "image": image_layout(side, channels)
        | {"dtype": "uint8, raw pixels 0-255 (the graphs scale and standardise them)"},
        "input": f"x: uint8 [items, {channels}, {side}, {side}]",
        "outputs": {
            "map": f"float32 [items, {side}, {side}]: the anomaly map, higher = more anomalous (segmenter, DRAEM: "
            "the probability that a pixel is part of a defect)",
            "score": "float32 [items]: the image's anomaly score, the maximum of its map after a box filter "
            "(computed in the graph; a segmenter with train.neighbour_distance adds its patches' nearest-neighbour "
            "distance in a bank of training patches, in the graph too)",
        },
        "score_pooling": {
            "score_pool": pool,
            "box_side_pixels": pool_side(pool, side, side),
            "how": "scipy.ndimage.uniform_filter(map, size=box_side, mode='nearest') then the maximum "
            "(domains/defects/metrics.py:image_scores); box_side = max(1, round(score_pool * image side))",
        },
        "thresholds": {name: float(t) for name, t in thresholds.items()},
        **_routing_doc(model_dir),
        "decision": "defective (1) when score >= the model's threshold (a quantile of held-out good images' "
        "scores), else good (0)",
    }
    return Exportable(
        models=models,
        labels=(items[LABEL].to_numpy()[split == "test"] != GOOD).astype(np.int64),
        threshold=float(thresholds[candidate]),  # the candidate's; each model's own is in its manifest entry
        class_names=[GOOD, "defective"],
        metric="auroc",
        preprocessing=preprocessing,
        not_converted=not_converted,
    )


def _units(model: Any, images: np.ndarray) -> np.ndarray | None:
    """A model per category: each image's output is its category's probability divided by that category's
    threshold, so parity is judged back in probabilities (the difference times the threshold)."""
    if not isinstance(model, Routed):
        return None
    return np.asarray([model.scales[c] for c in model.categories], dtype=np.float64)[model.route(images)]


def _routing_doc(model_dir: Path) -> dict[str, Any]:
    if not is_routed(model_dir):
        return {}
    return {
        "categories": {
            "names": routing_categories(model_dir),
            "how": "one model per category in each graph: an image goes to the category of its nearest training "
            "image by thumbnail (domains/defects/routed.py), and that category's map divided by its own threshold "
            "is the map output (so the thresholds here are near 1 and decide for every category)",
        }
    }


def _converter(graph: torch.nn.Module, example: torch.Tensor) -> Callable[[], bytes]:
    return lambda: from_torch(graph, (example,), ["x"], ["map", "score"], {"x": {0: "items"}})
