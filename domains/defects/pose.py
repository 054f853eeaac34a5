"""An object's pose from its foreground, and images turned to one canonical pose (for parts at any pose).

A part's pose is read from the moments of its foreground (`perlin.foreground_masks`): the centroid is
its position, the principal axis of the second moments its orientation up to a half turn, and the sign
of the third moment along that axis (the side its mass reaches further out, e.g. a tab) settles the half
turn. Turning every image so that axis points right and moving the centroid to the centre puts each part
in one pose: a model then learns one appearance of the part, not every turn of it (synthetic parts, five
seeds: the segmenter's image AUROC 0.834 -> 0.910; benchmarks/README.md). Works for parts whose outline
is not symmetric under a turn (most machined parts; MVTec's screw, metal nut); `alignable` leaves round
ones alone (their axis is noise). Not for parts whose turn is itself a defect (MVTec's transistor,
"misplaced") nor outlines symmetric under a half turn only (turned a half turn at random): set
`train.align: false` there.

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
    moments = _moments(mass)[2]
    mu20, mu02, mu11 = moments[:, 0, 2], moments[:, 2, 0], moments[:, 1, 1]
    anisotropy = torch.sqrt((mu20 - mu02) ** 2 + 4 * mu11**2) / (mu20 + mu02).clamp_min(1e-9)
    return float(anisotropy.median()) >= MIN_ANISOTROPY


def _coordinates(size: int, scale: float, device: torch.device) -> torch.Tensor:
    """(size,) pixel centres from the image centre, times `scale`."""
    return (torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2) * scale


def _moments(mass: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centroid (cx, cy: pixels from the image centre) and central moments of (N, H, W) masses:
    (N, 4, 4), [i, j] = sum of mass * dy^i * dx^j, in units of half the longer side.

    As matrix products (the mass times powers of each coordinate): in an exported graph, sums over the
    middle axes took 130 ms for 64 images of 128 px, these under 2 ms (onnxruntime, this 2-core CPU)."""
    n, h, w = mass.shape
    scale = 2 / max(h, w)
    ys, xs = _coordinates(h, scale, mass.device), _coordinates(w, scale, mass.device)
    raw = torch.stack([torch.ones_like(ys), ys]) @ (mass @ torch.stack([torch.ones_like(xs), xs], 1))  # y^i x^j
    total = raw[:, 0, 0].clamp_min(1.0)
    cx, cy = raw[:, 0, 1] / total, raw[:, 1, 0] / total
    dx, dy = xs - cx[:, None], ys - cy[:, None]  # (N, W), (N, H)
    powers_x = torch.stack([torch.ones_like(dx), dx, dx * dx, dx * dx * dx], 2)  # (N, W, 4)
    powers_y = torch.stack([torch.ones_like(dy), dy, dy * dy, dy * dy * dy], 1)  # (N, 4, H)
    return cx / scale, cy / scale, powers_y @ (mass @ powers_x)


def canonical_pose(x: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) affine matrices (affine_grid's: canonical-frame to image coordinates, normalised) that
    centre each image's object and turn its principal axis, heavier end first, to point right.

    x: (N, C, H, W) in [0, 1]. An image without an object (all foreground) gets the identity."""
    n, _, h, w = x.shape
    mass = foreground_masks(x)[:, 0].float()
    cx, cy, m = _moments(mass)
    angle = 0.5 * torch.atan2(2 * m[:, 1, 1], m[:, 0, 2] - m[:, 2, 0])
    cos, sin = torch.cos(angle), torch.sin(angle)
    # the third moment along the axis: which way the mass reaches further out
    skew = cos**3 * m[:, 0, 3] + 3 * cos**2 * sin * m[:, 1, 2] + 3 * cos * sin**2 * m[:, 2, 1] + sin**3 * m[:, 3, 0]
    flip = torch.where(skew < 0, -1.0, 1.0)
    cos, sin = cos * flip, sin * flip
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


def warp(x: torch.Tensor, affine: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(N, C, H, W) sampled through `affine` (canonical_pose's or its inverse), bilinear, at `size` (default:
    x's; a larger one also upsamples, in the same pass); outside the image the nearest edge value (a
    background, or a map's background).

    The grid is affine_grid's (align_corners false), built from the two coordinate vectors: affine_grid
    would keep an (H, W, 3) constant in an exported graph, 196 KB a warp at 128 px."""
    n = x.shape[0]
    h, w = size or x.shape[-2:]
    xs = _coordinates(w, 2 / w, x.device).view(1, 1, w)
    ys = _coordinates(h, 2 / h, x.device).view(1, h, 1)
    a = affine.to(x.dtype).view(n, 2, 3, 1, 1)
    grid = torch.stack([a[:, i, 0] * xs + a[:, i, 1] * ys + a[:, i, 2] for i in (0, 1)], 3)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_canonical(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) images in [0, 1] turned to their canonical poses, and the poses (for `from_canonical`).

    In float32 even inside a bf16 autocast (training on a CPU with native bf16): rounded moments would
    turn training images a few degrees off the pose their evaluation gets."""
    with torch.autocast(x.device.type, enabled=False):
        pose = canonical_pose(x.float())
        return warp(x.float(), pose), pose


def from_canonical(maps: torch.Tensor, pose: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) maps of canonical-pose images turned back to the images' poses, upsampled to `size` in
    the same pass; float32."""
    with torch.autocast(maps.device.type, enabled=False):
        return warp(maps.float(), inverse(pose), size)
