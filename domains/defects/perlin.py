"""DRAEM's simulated anomalies (Zavrtanik et al. 2021), in plain torch, with nothing downloaded.

- `perlin_noise`: 2-d gradient (Perlin) noise on a lattice of `res` cells per side, any image size.
- `perlin_masks`: DRAEM's anomaly shapes: Perlin noise of a random lattice (2^0 to 2^5 cells per side,
  each side its own, so blobs are round or elongated) thresholded at 0.5, turned by a random multiple
  of 90 degrees; a mask that covers less than `min_cover` is grown from the noise's highest values,
  so every mask is a real anomaly and its coverage lies in [min_cover, about 0.5].
- `textures`: the anomaly sources DRAEM takes from DTD, generated instead: fractal Perlin noise,
  gratings, checkers, cells and plain colours, with DRAEM's source augmentations (gamma, gain,
  inversion, posterisation). Plain colours alone cost DRAEM 1.8 / 4.7 points image / pixel AUROC on
  MVTec AD in its ablation; varied textures are what the discriminative network needs.
- `draem_anomalies`: a batch with anomalies blended in (opacity 1 - beta, beta uniform in [0, 0.8]),
  their sources textures or other images of the batch, optionally restricted to each image's
  foreground (objects on a background: an anomaly on the background teaches nothing about the part).

Every random draw comes from the `generator` passed in (seeded: same seed, same masks), or torch's
global RNG during training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SOURCES = ("texture", "image")


def _rand(*shape: int, generator: torch.Generator | None, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.rand(*shape, generator=generator, device=device)


def _fade(t: torch.Tensor) -> torch.Tensor:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(
    height: int,
    width: int,
    res: tuple[int, int],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(height, width) Perlin noise in about [-1, 1], with res[0] x res[1] lattice cells over the image."""
    ys = torch.arange(height, device=device, dtype=torch.float32) * res[0] / height
    xs = torch.arange(width, device=device, dtype=torch.float32) * res[1] / width
    iy, ix = ys.floor().long(), xs.floor().long()
    fy, fx = (ys - iy)[:, None], (xs - ix)[None, :]
    angles = 2 * math.pi * _rand(res[0] + 1, res[1] + 1, generator=generator, device=device)
    gy, gx = torch.sin(angles), torch.cos(angles)

    def corner(dy: int, dx: int) -> torch.Tensor:  # the corner's gradient . the offset from that corner
        rows, cols = (iy + dy)[:, None], (ix + dx)[None, :]
        return gy[rows, cols] * (fy - dy) + gx[rows, cols] * (fx - dx)

    ty, tx = _fade(fy), _fade(fx)
    top = torch.lerp(corner(0, 0), corner(0, 1), tx)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), tx)
    return math.sqrt(2) * torch.lerp(top, bottom, ty)


def perlin_masks(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    max_scale: int = 6,
    threshold: float = 0.5,
    min_cover: float = 0.002,
) -> torch.Tensor:
    """(n, 1, height, width) binary masks of thresholded Perlin noise (see the module's docstring)."""
    out = torch.empty(n, 1, height, width, device=device)
    for i in range(n):
        ry, rx = (int(2**v) for v in (_rand(2, generator=generator) * max_scale).floor().tolist())
        turns = int(_rand(1, generator=generator).item() * 4)
        side_h, side_w = (width, height) if turns % 2 else (height, width)
        noise = torch.rot90(perlin_noise(side_h, side_w, (ry, rx), generator, device), turns)
        mask = noise > threshold
        if mask.float().mean() < min_cover:  # too faint a draw: the highest values make the anomaly
            mask = noise >= torch.quantile(noise.flatten(), 1 - min_cover)
        out[i, 0] = mask.float()
    return out


def _fractal(height: int, width: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """Perlin noise summed over octaves (clouds, stains, grain), scaled to [0, 1]."""
    base = int(2 ** int(_rand(1, generator=generator).item() * 4))
    total = sum(perlin_noise(height, width, (base * 2**o, base * 2**o), generator, device) / 2**o for o in range(3))
    return (total - total.min()) / (total.max() - total.min() + 1e-6)


def _pattern(height: int, width: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """One (height, width) texture in [0, 1]: fractal noise, a grating, a checker, cells or a plain level."""
    kind = int(_rand(1, generator=generator).item() * 5)
    if kind == 0:
        return _fractal(height, width, generator, device)
    if kind == 4:
        return torch.full((height, width), _rand(1, generator=generator).item(), device=device)
    y = torch.arange(height, device=device, dtype=torch.float32)[:, None] / max(height, width)
    x = torch.arange(width, device=device, dtype=torch.float32)[None, :] / max(height, width)
    angle, freq = (_rand(2, generator=generator) * torch.tensor([math.pi, 1.0])).tolist()
    freq = 3 + 30 * freq
    u = (math.cos(angle) * x + math.sin(angle) * y) * freq
    v = (-math.sin(angle) * x + math.cos(angle) * y) * freq
    if kind == 1:  # a grating, soft or sharp
        wave = torch.sin(2 * math.pi * u)
        return 0.5 + 0.5 * wave if _rand(1, generator=generator).item() < 0.5 else (wave > 0).float()
    if kind == 2:  # a checker
        return ((u.floor() + v.floor()) % 2).float()
    # cells: the distance to the nearest of a few random points, as in cracked or porous material
    points = _rand(int(8 + 40 * _rand(1, generator=generator).item()), 2, generator=generator, device=device)
    grid = torch.stack([y.expand(height, width), x.expand(height, width)], -1).view(-1, 1, 2)
    nearest = (grid - points.view(1, -1, 2)).norm(dim=-1).amin(1).view(height, width)
    return nearest / (nearest.max() + 1e-6)


def textures(
    n: int,
    channels: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(n, channels, height, width) textures in [0, 1], each with DRAEM's random source augmentations."""
    out = torch.empty(n, channels, height, width, device=device)
    for i in range(n):
        t = _pattern(height, width, generator, device).clamp(0, 1)
        if channels > 1:  # a colour per channel
            t = t[None] * (0.3 + 0.7 * _rand(channels, 1, 1, generator=generator, device=device))
        t = t.expand(channels, height, width).clone()
        draws = _rand(4, generator=generator).tolist()
        t = t ** (0.5 + 1.5 * draws[0])  # gamma
        t = (t * (0.5 + draws[1])).clamp(0, 1)  # gain
        if draws[2] < 0.3:
            t = 1 - t
        if draws[3] < 0.3:
            t = (t * 4).floor() / 3  # posterised
        out[i] = t.clamp(0, 1)
    return out


def dilate(masks: torch.Tensor, k: int) -> torch.Tensor:
    """(n, 1, H, W) masks under a k x k (odd) max filter: one pass along rows and one along columns, each a 1-d
    max pool (on a CPU several times faster than `max_pool2d`, which is slow for one channel)."""
    n, _, h, w = masks.shape
    rows = F.max_pool1d(masks.reshape(n * h, 1, w), k, 1, k // 2).reshape(n, h, w)
    cols = F.max_pool1d(rows.transpose(1, 2).reshape(n * w, 1, h), k, 1, k // 2).reshape(n, w, h)
    return cols.transpose(1, 2).reshape(n, 1, h, w)


def foreground_masks(
    x: torch.Tensor, threshold: float = 0.15, min_share: float = 0.02, max_share: float = 0.9
) -> torch.Tensor:
    """(n, 1, H, W): where an image differs from its border (the background an object lies on).

    The border's median colour is the background; a pixel is foreground where some channel differs
    from it by more than `threshold` (then closed by a small max-pool). A texture, where the
    "foreground" is nearly everything or nearly nothing, gets the whole image.
    """
    n, _, h, w = x.shape
    edge = max(1, min(h, w) // 32)
    border = torch.cat(
        [
            x[..., :edge, :].flatten(2),
            x[..., -edge:, :].flatten(2),
            x[..., :, :edge].flatten(2),
            x[..., :, -edge:].flatten(2),
        ],
        2,
    )
    # the lower median, as torch.median gives it, through a sort: the exported segmenter aligns with this
    background = border.sort(dim=2).values[..., (border.shape[2] - 1) // 2, None, None]
    fg = ((x - background).abs().amax(1, keepdim=True) > threshold).float()
    k = 2 * edge + 1
    fg = dilate(fg, k)
    share = fg.mean(dim=(1, 2, 3), keepdim=True)
    whole = (share < min_share) | (share > max_share)
    return torch.where(whole, torch.ones_like(fg), fg)


def draem_anomalies(
    x: torch.Tensor,
    share: float,
    sources: tuple[str, ...] = SOURCES,
    foreground: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, C, H, W) in [0, 1] with DRAEM anomalies on a `share` of them, and the (n, 1, H, W) masks."""
    n, c, h, w = x.shape
    device = x.device
    masks = perlin_masks(n, h, w, generator, device)
    if foreground:
        masks = masks * foreground_masks(x)
    masks = masks * (_rand(n, 1, 1, 1, generator=generator, device=device) < share).float()
    fills = torch.empty_like(x)
    p_image = 0.5 if len(set(sources)) == 2 else float(sources[0] == "image")
    use_image = _rand(n, generator=generator) < p_image
    if (~use_image).any():
        fills[~use_image.to(device)] = textures(int((~use_image).sum()), c, h, w, generator, device)
    if use_image.any():  # another image of the category, turned or flipped so its structure does not line up
        donors = x[torch.randperm(n, generator=generator).to(device)] if n > 1 else x
        turned = torch.rot90(donors, 2, (2, 3)) if h != w else torch.rot90(donors, 1, (2, 3))
        gain = 0.5 + _rand(n, 1, 1, 1, generator=generator, device=device)
        fills[use_image.to(device)] = (turned * gain).clamp(0, 1)[use_image.to(device)]
    beta = 0.8 * _rand(n, 1, 1, 1, generator=generator, device=device)
    pasted = x * (1 - masks) + masks * ((1 - beta) * fills + beta * x)
    return pasted, masks
