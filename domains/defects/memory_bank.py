"""A memory bank of good patches, as PatchCore keeps one (Roth et al. 2022): the greedy coreset that picks it
(section 3.2: it covers the rare patches as well as the common ones, where a random subsample keeps mostly
the common ones) and each patch's distance to its nearest neighbour in it. Used by PatchCore and by the
segmenter's neighbour distance (neighbours.py)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PROJECTED = 128  # wider features are compared in a random projection to this many dimensions, as PatchCore does
QUERIES = 1024  # patches compared with the bank at once: a (1024, bank) distance block


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


@torch.no_grad()
def distance_maps(bank: torch.Tensor, features: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) distance of each patch of (N, D, h, w) `features` to its nearest patch in the (M, D) bank,
    upsampled to the image's `size`."""
    n, d, h, w = features.shape
    patches = features.permute(0, 2, 3, 1).reshape(-1, d)
    squared = (bank * bank).sum(1)
    nearest = [
        ((q * q).sum(1, keepdim=True) - 2 * q @ bank.T + squared).amin(1) for q in patches.split(QUERIES)
    ]  # |q - b|^2 expanded: one matrix product per block instead of a (queries, bank, D) difference
    if not nearest:
        return np.empty((0, *size), np.float32)
    distance = torch.cat(nearest).clamp_min(0).sqrt().view(n, 1, h, w)
    return F.interpolate(distance, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()
