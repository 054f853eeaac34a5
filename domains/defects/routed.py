"""One model per category behind one model's interface (MVTec AD's protocol: a detector per category).

Training fits each model kind once per category on that category's good images. An image is routed to
the model of the category whose training images it looks most like: its nearest neighbour among the
training images' thumbnails (a THUMB x THUMB average of the pixels; categories differ in the whole
picture, a defect in a small part of it), so scoring, the endpoint and the export need no category
field. Evaluation reports how often the route is right (`routed_correctly`). Each category's maps are
divided by its own threshold (the quantile of its held-out good images' scores), so one threshold near
1 decides for every category and one ranking serves the image AUROC over all of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROUTING, ROUTER_BANK = "routing.json", "routing_thumbnails.npz"
THUMB = 16  # thumbnail side: enough to tell a screw from a carpet, too coarse to see a defect


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """(N, C*t*t) float thumbnails of uint8 images (N, C, H, W): a box average `side // THUMB` pixels wide (the
    last few rows and columns dropped where THUMB does not divide the side, so the ONNX graph is one AvgPool)."""
    box = max(1, min(images.shape[-2:]) // THUMB)
    return F.avg_pool2d(images.float() / 255, box).flatten(1)


def nearest_category(thumbs: torch.Tensor, bank: torch.Tensor, bank_category: torch.Tensor) -> torch.Tensor:
    """(N,) index of the category of each thumbnail's nearest training thumbnail (squared distance)."""
    distance = (thumbs * thumbs).sum(1, keepdim=True) - 2 * thumbs @ bank.T + (bank * bank).sum(1)[None]
    return bank_category[distance.argmin(1)]


@dataclass
class Routed:
    """Per category: a trained model and the scale its maps are divided by; the training thumbnails."""

    categories: list[str]
    models: dict[str, Any]
    scales: dict[str, float]
    bank: np.ndarray  # (M, D) float32 thumbnails of the training images
    bank_category: np.ndarray  # (M,) int64 index into categories

    def route(self, images: np.ndarray) -> np.ndarray:
        """(N,) category index of each uint8 image (N, C, H, W)."""
        with torch.no_grad():
            return nearest_category(
                thumbnails(torch.from_numpy(images)), torch.from_numpy(self.bank), torch.from_numpy(self.bank_category)
            ).numpy()

    def outputs(
        self, images: np.ndarray, inner: Callable[[Any, np.ndarray], tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(maps, embeddings) of each image by its category's model (`inner(model, images)`), maps scaled."""
        route = self.route(images)
        maps: np.ndarray | None = None
        embedded: np.ndarray | None = None
        for k, category in enumerate(self.categories):
            rows = np.flatnonzero(route == k)
            if len(rows) == 0:
                continue
            m, e = inner(self.models[category], images[rows])
            if maps is None or embedded is None:
                maps = np.empty((len(images), *m.shape[1:]), np.float32)
                embedded = np.empty((len(images), *e.shape[1:]), e.dtype)
            maps[rows], embedded[rows] = m / self.scales[category], e
        if maps is None or embedded is None:  # no images: ask any model for the empty shapes
            return inner(self.models[self.categories[0]], images)
        return maps, embedded


def routed_file(file: Path, category: str) -> Path:
    """The file of one category's model next to where the single model would be: segmenter.pt -> segmenter.part.pt."""
    return file.with_name(f"{file.stem}.{category}{file.suffix}")


def is_routed(train_dir: Path) -> bool:
    return (train_dir / ROUTING).is_file()


def routing_categories(train_dir: Path) -> list[str]:
    return list(json.loads((train_dir / ROUTING).read_text())["categories"])


def save_router(train_dir: Path, categories: list[str], bank: np.ndarray, bank_category: np.ndarray) -> None:
    np.savez(train_dir / ROUTER_BANK, bank=bank.astype(np.float32), bank_category=bank_category.astype(np.int64))
    _write_routing(train_dir, {"categories": categories, "scales": {}})


def save_scales(train_dir: Path, name: str, scales: dict[str, float]) -> None:
    routing = json.loads((train_dir / ROUTING).read_text())
    routing["scales"][name] = scales
    _write_routing(train_dir, routing)


def load_routed(train_dir: Path, file: Path, loader: Callable[[Path], Any], name: str) -> Routed:
    routing = json.loads((train_dir / ROUTING).read_text())
    saved = np.load(train_dir / ROUTER_BANK)
    categories = routing["categories"]
    return Routed(
        categories,
        {c: loader(routed_file(file, c)) for c in categories},
        routing["scales"][name],
        saved["bank"],
        saved["bank_category"],
    )


def _write_routing(train_dir: Path, routing: dict) -> None:
    (train_dir / ROUTING).write_text(json.dumps(routing, indent=2))


class RoutedMap(torch.nn.Module):
    """The routed map in one graph (the export's): every category's map, each divided by its scale, and each
    image keeps its own category's (a one-hot sum: exact for the chosen map, and ONNX has every op)."""

    scales: torch.Tensor
    bank: torch.Tensor
    bank_category: torch.Tensor

    def __init__(self, routed: Routed, to_map: Callable[[Any], torch.nn.Module]):
        super().__init__()
        self.maps = torch.nn.ModuleList([to_map(routed.models[c]) for c in routed.categories])
        self.register_buffer("scales", torch.tensor([routed.scales[c] for c in routed.categories]))
        self.register_buffer("bank", torch.from_numpy(routed.bank))
        self.register_buffer("bank_category", torch.from_numpy(routed.bank_category))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        route = nearest_category(thumbnails(x), self.bank, self.bank_category)
        out = torch.zeros(x.shape[0], x.shape[-2], x.shape[-1], dtype=torch.float32)
        for k, to_map in enumerate(self.maps):
            chosen = (route == k).to(torch.float32)[:, None, None]
            out = out + chosen * (to_map(x) / self.scales[k])
        return out
