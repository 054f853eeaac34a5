"""An object's pose from its foreground, and images turned to one canonical pose (for parts at any pose).

A part's pose is read from the moments of its foreground (`perlin.foreground_masks`): the centroid is
its position, the principal axis of the second moments its orientation up to a half turn, and the sign
of the third moment along that axis (the side its mass reaches further out, e.g. a tab) settles the half
turn. Turning every image so that axis points right and moving the centroid to the centre puts each part
in one pose: a model then learns one appearance of the part, not every turn of it (synthetic parts, five
seeds: the segmenter's image AUROC 0.826 -> 0.907; benchmarks/README.md). Works for parts whose outline is not symmetric
under a turn (most machined parts; MVTec's screw, metal nut, transistor); `alignable` leaves round ones
alone (their axis is noise). An outline symmetric under a half turn only (an ellipse) would be turned by a
half turn at random: set `train.align: false` there.

Everything is torch on the images' device, in the graph: exported models align as trained ones do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from domains.defects.perlin import foreground_masks

MAX_SHARE_CV = 0.2  # an object category: its foreground's share of the image varies less than this (std / mean)
MIN_ANISOTROPY = 0.04  # an outline whose second moments name an axis (synthetic part: 0.08-0.10; a disc: < 0.015)
WHOLE = 0.99  # a foreground this large is a texture (foreground_masks gives such an image all of it)


def alignable(images: torch.Tensor) -> bool:
    """Whether (N, C, H, W) training images in [0, 1] show one object of a steady size on a background, whose
    outline names an axis: what `train.align: auto` aligns.

    A part fills about the same share of every image; what reads as foreground on a texture (a gradient
    across it, a blemish) varies from image to image (synthetic surfaces: 0.11-0.58 of the image; parts
    0.32-0.42; Magnetic-Tile 0.02-0.76). A round part's axis would be noise: each image turned at random."""
    mass = foreground_masks(images)[:, 0].float()
    shares = mass.mean(dim=(1, 2))
    if len(shares) < 2 or bool((shares > WHOLE).any()) or float(shares.std() / shares.mean()) > MAX_SHARE_CV:
        return False
    _, _, mu20, mu02, mu11 = _moments(mass)
    anisotropy = torch.sqrt((mu20 - mu02) ** 2 + 4 * mu11**2) / (mu20 + mu02).clamp_min(1e-9)
    return float(anisotropy.median()) >= MIN_ANISOTROPY


def _moments(mass: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Centroid (cx, cy, in pixels from the image centre) and central second moments (mu20, mu02, mu11, as
    sums) of (N, H, W) masses."""
    n, h, w = mass.shape
    ys = torch.linspace(-(h - 1) / 2, (h - 1) / 2, h, device=mass.device).view(1, h, 1)
    xs = torch.linspace(-(w - 1) / 2, (w - 1) / 2, w, device=mass.device).view(1, 1, w)
    total = mass.sum(dim=(1, 2)).clamp_min(1.0)
    cx = (mass * xs).sum(dim=(1, 2)) / total
    cy = (mass * ys).sum(dim=(1, 2)) / total
    dx, dy = xs - cx.view(n, 1, 1), ys - cy.view(n, 1, 1)
    mu20, mu02, mu11 = ((mass * a * b).sum(dim=(1, 2)) for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    return cx, cy, mu20, mu02, mu11


def canonical_pose(x: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) affine matrices (affine_grid's: canonical-frame to image coordinates, normalised) that
    centre each image's object and turn its principal axis, heavier end first, to point right.

    x: (N, C, H, W) in [0, 1]. An image without an object (all foreground) gets the identity."""
    n, _, h, w = x.shape
    mass = foreground_masks(x)[:, 0].float()
    cx, cy, mu20, mu02, mu11 = _moments(mass)
    angle = 0.5 * torch.atan2(2 * mu11, mu20 - mu02)
    ys = torch.linspace(-(h - 1) / 2, (h - 1) / 2, h, device=x.device).view(1, h, 1)
    xs = torch.linspace(-(w - 1) / 2, (w - 1) / 2, w, device=x.device).view(1, 1, w)
    along = (xs - cx.view(n, 1, 1)) * torch.cos(angle).view(n, 1, 1) + (ys - cy.view(n, 1, 1)) * torch.sin(angle).view(
        n, 1, 1
    )
    angle = torch.where((mass * along**3).sum(dim=(1, 2)) < 0, angle + torch.pi, angle)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # pixel-space turn about the centroid, in normalised coordinates (x by w / 2, y by h / 2)
    affine = torch.stack(
        [
            torch.stack([cos, -sin * h / w, 2 * cx / w], 1),
            torch.stack([sin * w / h, cos, 2 * cy / h], 1),
        ],
        1,
    )
    identity = torch.eye(2, 3, device=x.device).expand(n, 2, 3)
    whole = (mass.mean(dim=(1, 2)) > WHOLE).view(n, 1, 1)
    return torch.where(whole, identity, affine)


def inverse(affine: torch.Tensor) -> torch.Tensor:
    """The (N, 2, 3) affine matrices that undo `affine`."""
    a, b, c, d = affine[:, 0, 0], affine[:, 0, 1], affine[:, 1, 0], affine[:, 1, 1]
    det = a * d - b * c  # written out, not torch.linalg.inv: it exports to plain ONNX ops
    turn = torch.stack([torch.stack([d, -b], 1), torch.stack([-c, a], 1)], 1) / det.view(-1, 1, 1)
    return torch.cat([turn, -turn @ affine[:, :, 2:]], 2)


def warp(x: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) sampled through `affine` (canonical_pose's or its inverse), bilinear; outside the
    image the nearest edge value (a background, or a map's background)."""
    grid = F.affine_grid(affine.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
