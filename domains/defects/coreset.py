"""PatchCore's greedy coreset (Roth et al. 2022, section 3.2): a memory bank of patches that covers the rare
ones as well as the common ones, where a random subsample keeps mostly the common ones. Used by PatchCore and
by the segmenter's neighbour distance (neighbours.py)."""

from __future__ import annotations

import torch

PROJECTED = 128  # wider features are compared in a random projection to this many dimensions, as PatchCore does


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
