"""Seeded synthetic chest-radiograph-like images in MedMNIST's .npz layout.

Each image is a torso (soft tissue) with two dark lungs crossed by ribs, a bright spine and a
heart shadow; position, size, brightness and contrast vary per image, and pixel noise is added.
Positive images carry 1-3 diffuse opacities inside the lungs (as in pneumonia), each of a strength
drawn from [opacity_min, 1] x opacity_strength: faint ones are hard to see, so the classes overlap.
A known share of labels is then flipped.

Because the opacities are known, so is the best achievable ranking: `truth` holds each image's
opacity load, whose AUC against the labels bounds every model's (the report shows it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.medical.params import SyntheticParams

BACKGROUND, TISSUE, LUNG, BONE, HEART = 0.05, 0.55, 0.25, 0.72, 0.6
CONTRAST = TISSUE - LUNG  # the unit of opacity strength and noise
_CHUNK = 256  # images generated at once: bounds memory at large sizes


@dataclass
class SyntheticImages:
    splits: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (images (N, S, S) uint8, labels (N, 1))
    truth: pd.DataFrame  # split, index, opacity (the latent signal), flipped (label noise)


def generate_images(p: SyntheticParams, seed: int) -> SyntheticImages:
    rng = np.random.default_rng(seed)
    splits, truth = {}, []
    for split, n in (("train", p.n_train), ("val", p.n_val), ("test", p.n_test)):
        positive = rng.random(n) < p.positive_rate
        images, load = np.empty((n, p.image_size, p.image_size), np.uint8), np.zeros(n)
        for start in range(0, n, _CHUNK):
            rows = slice(start, min(start + _CHUNK, n))
            images[rows], load[rows] = _draw(rng, positive[rows], p)
        flipped = rng.random(n) < p.label_noise
        labels = (positive ^ flipped).astype(np.uint8)[:, None]
        splits[split] = (images, labels)
        truth.append(pd.DataFrame({"split": split, "index": np.arange(n), "opacity": load, "flipped": flipped}))
    return SyntheticImages(splits, pd.concat(truth, ignore_index=True))


def write_npz(images: SyntheticImages, file: Path) -> None:
    """MedMNIST's layout: <split>_images (N, H, W) uint8 and <split>_labels (N, 1)."""
    arrays: dict[str, Any] = {}
    for split, (x, y) in images.splits.items():
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    np.savez_compressed(file, **arrays)


def _ellipse(u: np.ndarray, v: np.ndarray, cu, cv, ru, rv, edge: float) -> np.ndarray:
    """A soft-edged ellipse mask in [0, 1] (per image: centres and radii are (n, 1, 1))."""
    r = np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2)
    return np.clip((1 - r) / edge, 0, 1)


def _draw(rng: np.random.Generator, positive: np.ndarray, p: SyntheticParams) -> tuple[np.ndarray, np.ndarray]:
    n, s = len(positive), p.image_size
    axis = np.linspace(-1, 1, s, dtype=np.float32)
    jitter = lambda scale: rng.normal(0, scale, (n, 1, 1)).astype(np.float32)  # noqa: E731
    zoom = 1 + jitter(0.05)
    u = (axis[None, None, :] - jitter(0.04)) / zoom
    v = (axis[None, :, None] - jitter(0.04)) / zoom

    body = _ellipse(u, v, 0, 0.1, 1.2, 1.35, 0.25)  # the torso fills the frame, as in MedMNIST's crops
    lungs = np.maximum(
        _ellipse(u, v, -0.42 + jitter(0.02), -0.1, 0.32 + jitter(0.02), 0.72 + jitter(0.03), 0.45),
        _ellipse(u, v, 0.42 + jitter(0.02), -0.1, 0.32 + jitter(0.02), 0.72 + jitter(0.03), 0.45),
    )
    heart = _ellipse(u, v, 0.12 + jitter(0.03), 0.42, 0.32 + jitter(0.02), 0.3, 0.6)
    spine = np.clip(1 - np.abs(u) / 0.12, 0, 1) ** 0.5 * body
    # Ribs slope down and outwards from the spine, visible over the lungs.
    ribs = (0.5 + 0.5 * np.cos(2 * np.pi * (v * 3.0 - 0.6 * np.abs(u) + rng.random((n, 1, 1))))) ** 4 * lungs

    image = BACKGROUND + (TISSUE - BACKGROUND) * body
    image = image + (LUNG - TISSUE) * lungs + 0.15 * ribs
    image = np.maximum(image, HEART * heart)
    image = np.maximum(image, BONE * spine)

    # Diffuse opacities: Gaussian haze inside the lungs, of a random strength per image.
    load = np.zeros(n)
    for i in np.flatnonzero(positive):
        for _ in range(rng.integers(1, 4)):
            side = rng.choice([-0.4, 0.4])
            cu, cv = side + rng.normal(0, 0.1), rng.uniform(-0.45, 0.4)
            sigma = rng.uniform(0.1, 0.25)
            amplitude = p.opacity_strength * CONTRAST * rng.uniform(p.opacity_min, 1)
            haze = amplitude * np.exp(-((u[i] - cu) ** 2 + (v[i] - cv) ** 2) / (2 * sigma**2)) * lungs[i]
            image[i] += haze
            load[i] += haze.sum() / s**2
    image = (image - 0.4) * (1 + jitter(0.08)) + 0.4 + jitter(0.03)  # exposure varies between images
    image += rng.normal(0, p.noise_std * CONTRAST, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), load
