"""Aspect-kept tiles (`prepare.tiles`): each image resized so that its short side is `prepare.image_size`, its
aspect kept, and cut into as many square tiles along its long side as cover it (evenly spaced, overlapping
where the side is not a whole number of tiles). A square image is one tile, the same pixels as its square.

Why: prepare squeezes every image into a square, so a crop 2.4 times wider than tall is shrunk 2.4 times more
across than down, and a crack running down it, a few pixels wide, falls under a pixel. Its tiles keep the
scale: the segmenter's nearest-neighbour distance on them (neighbours.py) finds what the squeezed square lost
(Magnetic-Tile: benchmarks/README)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from domains.common.images import to_size


@dataclass(frozen=True)
class Tiles:
    images: np.ndarray  # (T, C, size, size) uint8
    owner: np.ndarray  # (T,) int64: the image each tile was cut from, counting from 0

    def of(self, rows: np.ndarray) -> Tiles:
        """The tiles of images `rows` (indices into the images these tiles were cut from), owners renumbered
        to count along `rows`."""
        position = np.full(int(self.owner.max(initial=-1)) + 1, -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        keep = np.flatnonzero(position[self.owner] >= 0)
        order = keep[np.argsort(position[self.owner[keep]], kind="stable")]
        return Tiles(np.ascontiguousarray(self.images[order]), position[self.owner[order]])


def tile_layout(height: int, width: int, size: int) -> tuple[tuple[int, int], list[int]]:
    """The aspect-kept (height, width) with the short side `size`, and each tile's start along the long side."""
    long_side = max(size, round(max(height, width) * size / min(height, width)))
    shape = (size, long_side) if width >= height else (long_side, size)
    count = math.ceil(long_side / size)
    starts = [round(i * (long_side - size) / (count - 1)) for i in range(count)] if count > 1 else [0]
    return shape, starts


def aspect_tiles(pixels: list[np.ndarray], size: int, channels: int) -> Tiles:
    """The tiles of (H, W, C) images (as the gate read them), resized as prepare resizes (to_size)."""
    images, owner = [], []
    for i, array in enumerate(pixels):
        (h, w), starts = tile_layout(array.shape[0], array.shape[1], size)
        kept = to_size(array, (h, w), channels)
        for start in starts:
            images.append(kept[:, :, start : start + size] if w >= h else kept[:, start : start + size, :])
            owner.append(i)
    if not images:
        return Tiles(np.zeros((0, channels, size, size), np.uint8), np.zeros(0, np.int64))
    return Tiles(np.ascontiguousarray(np.stack(images)), np.asarray(owner, dtype=np.int64))


def per_image_max(values: np.ndarray, owner: np.ndarray, images: int) -> np.ndarray:
    """(images,) the maximum of each image's tiles' `values` (an image scores as its most anomalous tile)."""
    out = np.full(images, -np.inf)
    np.maximum.at(out, owner, values)
    return out
