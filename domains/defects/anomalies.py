"""Synthetic anomalies pasted on good images, on the device, for the torch segmenter (after DRAEM).

The segmenter never sees a real defect: it learns to find regions that do not belong to the
surface around them. Shapes are generic, drawn at random per image: blobs (thresholded smooth
noise, from specks to large patches, as DRAEM's Perlin masks), strokes (thin random walks) and
ellipses. What fills a shape is drawn too, from the fills asked for (`params.AnomalyFill`; by default the first
four): another good image turned by 90 degrees (`turned`: a foreign texture), the image itself
darker or brighter (`darker_brighter`), another image darker or brighter (`other_darker_brighter`),
a near-flat dark or bright level (`level`: material missing, a foreign body), or another image
upside down at this one's mean brightness (`other_same_brightness`: a patch of surface finished
differently, told apart by its grain alone, as Magnetic-Tile's `uneven`); darker or brighter means
by a factor of 0.4 to 0.75 or its inverse, never close to 1. The fill is blended with opacity
1 - beta, beta uniform in [0, 0.5], so faint anomalies are among them.

Every random draw comes from the `generator` passed in, or torch's seeded global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from domains.defects.params import DEFAULT_FILLS, AnomalyFill
from domains.defects.perlin import dilate, foreground_masks

SHAPES = ("blob", "stroke", "ellipse")


def _rand(*shape: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(*shape, device=device, generator=generator)


def blob_masks(n: int, size: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 1, size, size) masks: smooth noise thresholded to cover 0.3 % to 30 % of the image."""
    out = torch.empty(n, 1, size, size, device=device)
    for i in range(n):  # each image its own noise scale: from a few large patches to many specks
        grid = 2 + (_rand(2, device=device, generator=generator) * 10).long()
        noise = torch.randn(1, 1, int(grid[0]), int(grid[1]), device=device, generator=generator)
        noise = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)
        share = 10 ** (-2.5 + 2.0 * float(_rand(1, device=device, generator=generator)))
        count = max(1, round(share * noise.numel()))  # the `count` highest values: kthvalue, not a full sort
        threshold = noise.flatten().kthvalue(noise.numel() - count + 1).values
        out[i] = (noise >= threshold).float()[0]
    return out


def _grid(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    coords = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    return coords.view(1, size, 1), coords.view(1, 1, size)  # y, x


def stroke_masks(
    n: int,
    size: int,
    device: torch.device,
    generator: torch.Generator | None = None,
    steps: int = 16,
    per_step: int = 8,
) -> torch.Tensor:
    """(n, 1, size, size) masks of thin random walks (cracks, scratches), 1 or 3 px wide per 128 px.

    Each walk is drawn as points every 1/per_step of a step, set in an empty canvas and widened
    by a max-pool: no per-pixel distances, so it costs little more than the canvas.
    """
    start = _rand(n, 1, 2, device=device, generator=generator) * size
    turns = torch.cumsum(torch.randn(n, steps, device=device, generator=generator) * 0.4, 1)
    turns = turns + _rand(n, 1, device=device, generator=generator) * 2 * math.pi
    step = (0.02 + 0.04 * _rand(n, 1, 1, device=device, generator=generator)) * size
    moves = torch.stack([torch.cos(turns), torch.sin(turns)], -1) * step  # (n, steps, 2) as (x, y)
    starts = start + torch.cumsum(moves, 1) - moves
    fractions = torch.arange(per_step, device=device, dtype=torch.float32).view(1, 1, -1, 1) / per_step
    points = (starts[:, :, None] + fractions * moves[:, :, None]).reshape(n, -1, 2).round().long()
    inside = ((points >= 0) & (points < size)).all(-1)
    index = (points[..., 1] * size + points[..., 0]).clamp(0, size * size - 1)
    canvas = torch.zeros(n, size * size, device=device)
    canvas.scatter_reduce_(1, index, inside.float(), reduce="amax")
    canvas = canvas.view(n, 1, size, size)
    radius = (_rand(n, device=device, generator=generator) * 1.5 * max(size / 128, 1)).round().long()
    out = canvas.clone()
    for r in torch.unique(radius).tolist():
        if r > 0:
            rows = radius == r
            out[rows] = dilate(canvas[rows], 2 * r + 1)
    return out


def ellipse_masks(n: int, size: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 1, size, size) masks of ellipses 2 % to 7 % of the side across (spots, pits, holes)."""
    y, x = _grid(size, device)
    centre = _rand(n, 2, device=device, generator=generator) * size
    radius = (0.015 + 0.05 * _rand(n, 2, device=device, generator=generator)) * size
    inside = ((x - centre[:, 0, None, None]) / radius[:, 0, None, None]) ** 2 + (
        (y - centre[:, 1, None, None]) / radius[:, 1, None, None]
    ) ** 2
    return (inside <= 1).float()[:, None]


def anomaly_masks(n: int, size: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 1, size, size) masks, each of a random shape family."""
    family = (_rand(n, device=device, generator=generator) * len(SHAPES)).long()
    out = torch.zeros(n, 1, size, size, device=device)
    makers = (blob_masks, stroke_masks, ellipse_masks)
    for k, make in enumerate(makers):
        rows = torch.nonzero(family == k).flatten()
        if len(rows):
            out[rows] = make(len(rows), size, device, generator)
    return out


def _same_brightness(fill: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`fill` scaled to each image of `x`'s mean brightness: only its texture tells it apart."""
    return fill * (x.mean((1, 2, 3), keepdim=True) / fill.mean((1, 2, 3), keepdim=True).clamp_min(1e-3))


def paste_anomalies(
    x: torch.Tensor,
    share: float,
    generator: torch.Generator | None = None,
    foreground: bool = False,
    fills: Sequence[AnomalyFill] = DEFAULT_FILLS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, C, H, W) in [0, 1] with anomalies pasted on a `share` of them; and the (n, 1, H, W) masks.

    Needs square images (the foreign texture is a turned copy); anomalies must not vanish, so a
    mask that lands on no pixel is left empty and that image counts as good. `foreground`: only where
    an image differs from its border (an object's, `perlin.foreground_masks`; an even texture is all
    foreground, but one with a gradient across it is not: for parts on a background). `fills`: what
    fills them, each image's drawn from these.
    """
    n, c, h, w = x.shape
    device = x.device
    masks = anomaly_masks(n, h, device, generator)
    if foreground:
        masks = masks * foreground_masks(x)
    masks = masks * (_rand(n, 1, 1, 1, device=device, generator=generator) < share).float()
    donor = x[torch.randperm(n, device=device, generator=generator)] if n > 1 else x.flip(3)
    # darker or brighter by 25 % or more: a fill too close to the surface would be a label without a defect
    # (the same-brightness fill differs by its texture instead)
    gain = 0.4 + 0.35 * _rand(n, 1, 1, 1, device=device, generator=generator)
    gain = torch.where(_rand(n, 1, 1, 1, device=device, generator=generator) < 0.5, gain, 1 / gain)
    level = (
        F.interpolate(
            _rand(n, 1, 4, 4, device=device, generator=generator), size=(h, w), mode="bicubic", align_corners=False
        )
        * 0.2
        + (_rand(n, 1, 1, 1, device=device, generator=generator) < 0.5).float() * 0.75
    )
    makers: dict[AnomalyFill, Callable[[], torch.Tensor]] = {  # built only when asked for: this runs every batch
        "turned": lambda: torch.rot90(donor, 1, (2, 3)),
        "darker_brighter": lambda: x * gain,
        "other_darker_brighter": lambda: donor * gain,
        "level": lambda: level.expand(n, c, h, w),
        "other_same_brightness": lambda: _same_brightness(donor.flip(2), x),
    }
    kind = (_rand(n, device=device, generator=generator) * len(fills)).long()
    fill = torch.stack([makers[name]() for name in fills])[kind, torch.arange(n, device=device)].clamp(0, 1)
    beta = 0.5 * _rand(n, 1, 1, 1, device=device, generator=generator)
    pasted = x * (1 - masks) + masks * ((1 - beta) * fill + beta * x)
    return pasted, masks
