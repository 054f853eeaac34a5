"""A memory bank of good patches, as PatchCore keeps one (Roth et al. 2022): the greedy coreset that picks it
(section 3.2: it covers the rare patches as well as the common ones, where a random subsample keeps mostly
the common ones) and each patch's distance to its nearest neighbour in it. Used by PatchCore and by the
segmenter's neighbour distance (neighbours.py)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PROJECTED = 128  # wider features are compared in a random projection to this many dimensions, as PatchCore does
QUERIES = 1024  # patches compared with the bank at once (whole images): about a (1024, bank) distance block


def greedy_coreset(patches: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """`size` rows of (M, D) `patches` by k-centre greedy: from a seeded first patch, each next one is the patch
    farthest from every patch kept so far (features wider than PROJECTED compared in a seeded projection)."""
    if len(patches) <= size:
        return patches
    generator = torch.Generator().manual_seed(seed)
    x = patches.float()
    if x.shape[1] > PROJECTED:  # distances are nearly kept (Johnson-Lindenstrauss); each step costs D / 128 less
        x = x @ (torch.randn(x.shape[1], PROJECTED, generator=generator) / PROJECTED**0.5)
    squared = (x * x).sum(1)
    first = int(torch.randint(len(x), (1,), generator=generator))
    nearest = squared - 2 * (x @ x[first]) + squared[first]  # squared distance to the nearest patch kept
    kept = [first]
    for _ in range(size - 1):
        kept.append(int(nearest.argmax()))
        nearest = torch.minimum(nearest, squared - 2 * (x @ x[kept[-1]]) + squared[kept[-1]])
    return patches[kept].clone()


def nearest_distances(bank: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) distance of each patch of (N, D, h, w) `features` to its nearest patch in the (M, D) bank:
    |q - b|^2 expanded, one matrix product instead of a (patches, bank, D) difference (torch ops only: the
    export's graph runs it too)."""
    n, d, h, w = features.shape
    patches = features.permute(0, 2, 3, 1).reshape(-1, d)
    squared = (patches * patches).sum(1, keepdim=True) - 2 * patches @ bank.T + (bank * bank).sum(1)
    return squared.amin(1).clamp_min(0).sqrt().view(n, 1, h, w)


@torch.no_grad()
def distance_maps(bank: torch.Tensor, features: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) nearest-neighbour distances of (N, D, h, w) `features`, upsampled to the image's `size`."""
    per_block = max(1, QUERIES // max(1, features.shape[-2] * features.shape[-1]))  # images per distance block
    maps = [
        F.interpolate(nearest_distances(bank, block), size=size, mode="bilinear", align_corners=False)[:, 0]
        for block in features.split(per_block)
    ]
    return torch.cat(maps).numpy() if maps else np.empty((0, *size), np.float32)
