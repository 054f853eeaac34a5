"""Seeded textured surfaces or parts with injected defects, written as MVTec AD category folders.

Two categories (`synthetic.category`: one of them, or `both`, each in its own category folder of an
MVTec-style dataset folder), as MVTec AD has textures and objects:
- surface: a texture filling the image (below);
- part: a flanged disc (a central bore, three bolt holes, a tab that shows its orientation) with the
  surface's brushed texture, on a dark background, at a random pose: turned by any angle, shifted
  by up to `pose_shift` of the side, scaled by up to 8 %. Defects lie on the part only (a defect
  mask is clipped to the part, and drawn again until most of it is on the part), so a model must
  learn what is normal for the part in any pose, and that the background is not part of it.

A surface is a grey level, a linear gradient, a directional grain (brushed or rolled metal) and
fine noise; every image of one dataset shares the grain's direction, as parts of one production
line do. Defects, each with its pixel mask:

- scratch: a thin, slightly curved bright line;
- spot: a dark, soft-edged ellipse (a stain or a pit);
- crack: a dark, jagged line that wanders (a random walk);
- missing: a region where the material is gone and the dark background shows.

The folder holds `train/good/*.png`, `test/good/*.png`, `test/<type>/*.png` and
`ground_truth/<type>/<stem>_mask.png` (0/255), so acquire reads it with the MVTec loader.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from domains.defects.params import SyntheticParams


def surface(rng: np.random.Generator, size: int, grain_angle: float) -> np.ndarray:
    """One defect-free (size, size) surface in [0, 1]."""
    pad = size // 2  # grain drawn on a larger canvas, so rotating it leaves no empty corners
    canvas = rng.normal(size=(size + 2 * pad, size + 2 * pad))
    grain = ndimage.gaussian_filter(canvas, sigma=(0.7, rng.uniform(6, 12)))
    grain = ndimage.rotate(grain, math.degrees(grain_angle + rng.normal(0, 0.05)), reshape=False, order=1)
    grain = grain[pad : pad + size, pad : pad + size]
    grain /= grain.std() + 1e-9
    yy, xx = np.mgrid[0:size, 0:size] / size
    direction = rng.uniform(0, 2 * math.pi)
    gradient = (np.cos(direction) * (xx - 0.5) + np.sin(direction) * (yy - 0.5)) * rng.uniform(0.05, 0.25)
    base = rng.uniform(0.4, 0.6)
    return np.clip(base + gradient + 0.05 * grain + rng.normal(0, 0.015, (size, size)), 0, 1)


def _canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    mask = Image.new("L", (size, size), 0)
    return mask, ImageDraw.Draw(mask)


def _walk(rng: np.random.Generator, size: int, steps: int, step: float, turn: float) -> list[tuple[float, float]]:
    """A random walk from a random point inside the central 80 % of the image."""
    x, y = rng.uniform(0.1, 0.9, 2) * size
    angle = rng.uniform(0, 2 * math.pi)
    points = [(x, y)]
    for _ in range(steps):
        angle += rng.normal(0, turn)
        x, y = x + step * math.cos(angle), y + step * math.sin(angle)
        points.append((x, y))
    return points


def defect_mask(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """The (size, size) boolean mask of one defect of `kind`."""
    mask, draw = _canvas(size)
    scale = size / 128
    if kind == "scratch":
        length = rng.uniform(0.25, 0.6) * size
        points = _walk(rng, size, 3, length / 3, 0.15)
        draw.line(points, fill=255, width=max(1, round(2 * scale)))
    elif kind == "spot":
        x, y = rng.uniform(0.15, 0.85, 2) * size
        rx, ry = rng.uniform(2.5, 7, 2) * scale
        draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=255)
    elif kind == "crack":
        points = _walk(rng, size, int(rng.integers(10, 20)), 3 * scale, 0.6)
        draw.line(points, fill=255, width=max(1, round(rng.uniform(1.5, 3) * scale)))
    elif kind == "missing":
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        corners = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
        radii = rng.uniform(5, 13, corners) * scale
        draw.polygon([(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii)], fill=255)
    else:
        raise ValueError(f"unknown defect type '{kind}'")
    return np.asarray(mask) > 0


def inject(rng: np.random.Generator, image: np.ndarray, kind: str, contrast: float) -> tuple[np.ndarray, np.ndarray]:
    """The image with one defect of `kind`, and the defect's mask."""
    mask = defect_mask(rng, kind, image.shape[0])
    soft = ndimage.gaussian_filter(mask.astype(float), 0.6)  # edges blend in, as optics blur them
    if kind == "missing":  # the material is gone: the dark background shows, with a little noise
        change = (rng.uniform(0.02, 0.1) + rng.normal(0, 0.01, image.shape) - image) * soft
    else:
        level = {"scratch": rng.uniform(0.2, 0.35), "spot": -rng.uniform(0.15, 0.3), "crack": -rng.uniform(0.15, 0.3)}
        change = level[kind] * soft
    out = image + contrast * change
    return np.clip(out, 0, 1), mask


def to_pixels(image: np.ndarray, channels: int, tint: np.ndarray) -> np.ndarray:
    """[0, 1] grey -> uint8 (H, W) or tinted (H, W, 3)."""
    grey = np.round(image * 255).astype(np.uint8)
    if channels == 1:
        return grey
    return np.clip(np.round(image[:, :, None] * tint * 255), 0, 255).astype(np.uint8)


def part(rng: np.random.Generator, size: int, grain_angle: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """One defect-free part on its background, in [0, 1], and the part's (size, size) mask."""
    angle = rng.uniform(0, 2 * math.pi)
    scale = size * rng.uniform(0.92, 1.08)
    cy, cx = size / 2 + rng.uniform(-shift, shift, 2) * size
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = yy - cy, xx - cx
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / scale  # the part's own frame, in part sizes
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / scale
    r = np.hypot(u, v)
    solid = (r <= 0.3) | ((np.abs(v) <= 0.06) & (u >= 0) & (u <= 0.38))  # disc + tab
    solid &= r >= 0.09  # the bore
    for k in range(3):  # bolt holes, 120 degrees apart, none on the tab
        a = math.pi / 3 + k * 2 * math.pi / 3
        solid &= np.hypot(u - 0.2 * math.cos(a), v - 0.2 * math.sin(a)) >= 0.035
    soft = np.clip(ndimage.gaussian_filter(solid.astype(float), 0.7), 0, 1)  # anti-aliased edges
    texture = surface(rng, size, grain_angle)
    # the texture turns with the part: sample it in the part's frame
    texture = ndimage.map_coordinates(texture, [v * scale + size / 2, u * scale + size / 2], order=1, mode="reflect")
    shading = 1 - 0.5 * r  # a lamp above the centre
    background = rng.uniform(0.08, 0.14) + rng.normal(0, 0.01, (size, size))
    return np.clip(soft * texture * shading + (1 - soft) * background, 0, 1), solid


def inject_on_part(
    rng: np.random.Generator, image: np.ndarray, solid: np.ndarray, kind: str, contrast: float
) -> tuple[np.ndarray, np.ndarray]:
    """A defect of `kind` on the part: the mask is drawn until most of it lies on the part, then clipped to it."""
    for _ in range(50):
        mask = defect_mask(rng, kind, image.shape[0])
        if (mask & solid).sum() >= 0.8 * mask.sum() and (mask & solid).sum() >= 4:
            break
    mask &= solid
    soft = ndimage.gaussian_filter(mask.astype(float), 0.6) * solid  # edges blend in, on the part only
    if kind == "missing":  # a chunk broken off: the background shows
        change = (rng.uniform(0.08, 0.14) + rng.normal(0, 0.01, image.shape) - image) * soft
    else:
        level = {"scratch": rng.uniform(0.2, 0.35), "spot": -rng.uniform(0.15, 0.3), "crack": -rng.uniform(0.15, 0.3)}
        change = level[kind] * soft
    return np.clip(image + contrast * change, 0, 1), mask


BOTH = ("surface", "part")  # synthetic.category `both`: these category folders, in this order


def categories(p: SyntheticParams) -> list[str]:
    """The category folders `write_mvtec` writes for `both`; empty for one category (written as the folder)."""
    return list(BOTH) if p.category == "both" else []


def write_mvtec(p: SyntheticParams, seed: int, root: Path) -> Path:
    """Generate the dataset into `root` (MVTec layout: a category folder, or for `both` a folder of category
    folders, each seeded on its own) and return it."""
    if p.category == "both":
        for offset, name in enumerate(BOTH):
            write_mvtec(p.model_copy(update={"category": name}), seed + offset, root / name)
        return root
    rng = np.random.default_rng(seed)
    grain_angle = rng.uniform(0, math.pi)
    tint = rng.uniform(0.8, 1.2, 3)
    size = p.image_size

    def save(array: np.ndarray, file: Path) -> None:
        file.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(file)

    def good() -> tuple[np.ndarray, np.ndarray]:
        if p.category == "part":
            return part(rng, size, grain_angle, p.pose_shift)
        return surface(rng, size, grain_angle), np.ones((size, size), dtype=bool)

    for split, count in (("train", p.n_train), ("test", p.n_test_good)):
        for i in range(count):
            save(to_pixels(good()[0], p.channels, tint), root / split / "good" / f"{i:03d}.png")
    for kind in p.defect_types:
        for i in range(p.n_test_per_type):
            clean, solid = good()
            image, mask = (
                inject_on_part(rng, clean, solid, kind, p.defect_contrast)
                if p.category == "part"
                else inject(rng, clean, kind, p.defect_contrast)
            )
            save(to_pixels(image, p.channels, tint), root / "test" / kind / f"{i:03d}.png")
            save(mask.astype(np.uint8) * 255, root / "ground_truth" / kind / f"{i:03d}_mask.png")
    return root
