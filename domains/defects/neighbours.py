"""The segmenter's second opinion (`train.neighbour_distance`): how far an image's patches lie from the
nearest patch of the good training images, in the segmenter's own features (PatchCore's nearest-neighbour score,
on a network trained from scratch instead of ImageNet's).

The segmenter only finds what looks like the anomalies it was shown; a real defect unlike them (a faint
crack) can leave its map flat. The distance asks another question, what was never seen in a good image,
and adds it to the image score: on Magnetic-Tile the two disagree most on cracks (benchmarks/README).
Features: the encoder's 1/8 map, each position averaged over its 3 x 3 neighbourhood (PatchCore's local
context) and, when the model averages flips, over the image's flips too. The bank keeps `train.memory_bank`
patches chosen by PatchCore's greedy coreset (each next patch the one farthest from those kept), so it
covers what is rare as well as what is common: on Magnetic-Tile 3,507 of 175,360 patches (2 %) scored as
well as all of them, where a random 23 % lost most of the gain.

The image score becomes the segmenter's plus the distance's, standardised on the held-out good images
and put in the segmenter's units (its spread there), so the decision threshold and the maps' colours
stay on the segmenter's scale. The anomaly map is the segmenter's alone: the distance is coarse (1/8) and
lowered the pixel AUROC wherever it was mixed in.

With `prepare.tiles` a second bank is kept, of the training images' aspect-kept tiles (tiles.py), and its
distance (an image's: its most distant tile's) is added the same way: the square resize squeezes a thin
crack in a wide crop under a pixel, and its tile keeps it (on Magnetic-Tile cracks 0.80 -> 0.89).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from domains.common.errors import DataError
from domains.common.vision import to_unit
from domains.defects.memory_bank import distance_maps, greedy_coreset
from domains.defects.metrics import image_scores
from domains.defects.segmenter import FLIPS, Segmenter, anomaly_maps
from domains.defects.tiles import Tiles, per_image_max


@dataclass
class NeighbourBank:
    features: torch.Tensor  # (patches, D) of the good training images
    mean: float  # the distance's image score on held-out good images: mean
    scale: float  # the segmenter's image-score spread over the distance's, on those images


def patch_features_of(model: Segmenter, x: torch.Tensor) -> torch.Tensor:
    """(N, D, h, w) locally averaged 1/8 encoder features of a batch (uint8 or [0, 1]; torch ops only: the
    export's graph runs it too)."""
    x = to_unit(x)
    views = ((), *FLIPS) if model.flip_average else ((),)
    total = torch.zeros(())
    for dims in views:
        eighth = F.avg_pool2d(model.encode(x.flip(dims) if dims else x)[1].float(), 3, 1, 1)
        total = total + (eighth.flip(dims) if dims else eighth)
    return total / len(views)


@torch.no_grad()
def patch_features(model: Segmenter, images: np.ndarray, batch_size: int = 32) -> torch.Tensor:
    """(N, D, h, w) locally averaged 1/8 encoder features of uint8 images (N, C, H, W)."""
    model.eval()
    out = [
        patch_features_of(model, torch.from_numpy(images[i : i + batch_size]))
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out) if out else torch.empty(0, 4 * model.width, 0, 0)


def distance_scores(model: Segmenter, bank: torch.Tensor, images: np.ndarray, pool: float) -> np.ndarray:
    """(N,) image scores of the distance maps (the maximum after the same box filter as the segmenter's)."""
    return image_scores(distance_maps(bank, patch_features(model, images), images.shape[-2:]), pool)


def tile_distance_scores(model: Segmenter, bank: torch.Tensor, tiles: Tiles, images: int, pool: float) -> np.ndarray:
    """(images,) each image's score by its tiles: the highest of its tiles' distance scores."""
    return per_image_max(distance_scores(model, bank, tiles.images, pool), tiles.owner, images)


def fit_bank(
    model: Segmenter, train_images: np.ndarray, val_images: np.ndarray, pool: float, size: int, seed: int
) -> NeighbourBank:
    """A coreset of `size` training patches, and the scale that puts its scores in the segmenter's units."""
    bank = _coreset(model, train_images, size, seed)
    distance = distance_scores(model, bank, val_images, pool)
    return NeighbourBank(bank, float(distance.mean()), _scale(model, val_images, pool, distance))


def fit_tile_bank(
    model: Segmenter, train_tiles: Tiles, val_images: np.ndarray, val_tiles: Tiles, pool: float, size: int, seed: int
) -> NeighbourBank:
    """fit_bank on the training images' tiles; an image's distance is its most distant tile's."""
    bank = _coreset(model, train_tiles.images, size, seed)
    distance = tile_distance_scores(model, bank, val_tiles, len(val_images), pool)
    return NeighbourBank(bank, float(distance.mean()), _scale(model, val_images, pool, distance))


def _coreset(model: Segmenter, images: np.ndarray, size: int, seed: int) -> torch.Tensor:
    features = patch_features(model, images)
    return greedy_coreset(features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]).contiguous(), size, seed)


def _scale(model: Segmenter, val_images: np.ndarray, pool: float, distance: np.ndarray) -> float:
    """The segmenter's image-score spread over the distance's, on the held-out good images."""
    own = image_scores(anomaly_maps(model, torch.from_numpy(val_images)), pool)
    return float(own.std() / max(distance.std(), 1e-12))


def with_neighbours(
    model: Segmenter, images: np.ndarray, scores: np.ndarray, pool: float, tiles: Tiles | None = None
) -> np.ndarray:
    """The segmenter's image scores plus the nearest-neighbour distances' (of the squares, and of the aspect-kept
    tiles where it has a tile bank), in the segmenter's units."""
    for term in neighbour_terms(model, images, pool, tiles):
        if term is not None:
            scores = scores + term
    return scores


def neighbour_terms(
    model: Segmenter, images: np.ndarray, pool: float, tiles: Tiles | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """What each distance adds to the images' scores, in the segmenter's units: the squares' and the tiles'
    (None where the model has no such bank)."""
    bank, tile_bank = model.neighbours, model.tile_neighbours
    square = None if bank is None else bank.scale * (distance_scores(model, bank.features, images, pool) - bank.mean)
    if tile_bank is None:
        return square, None
    if tiles is None:
        raise DataError("this segmenter also scores each image's aspect-kept tiles (prepare.tiles): none given")
    distance = tile_distance_scores(model, tile_bank.features, tiles, len(images), pool)
    return square, tile_bank.scale * (distance - tile_bank.mean)
