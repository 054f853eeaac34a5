"""Pixel masks of defects: their facts for the gate, and reading them (binarised) for training and metrics.

A mask file is read as it is; its defect pixels are those above half its maximum, which reads
0/255 and 0/1 masks exactly and binarises Magnetic-Tile's anti-aliased ones. The gate sees how
soft a mask is (`mask_soft_fraction`) and blocks it where the source's masks should be binary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from domains.common.errors import DataError
from domains.common.images import file_facts, pixel_hash, read_image
from domains.defects.loaders import MASK_PATH

MASK_ERROR, MASK_HASH = "mask_error", "mask_hash"
MASK_COLUMNS = [MASK_ERROR, "mask_height", "mask_width", "mask_defect_pixels", "mask_soft_fraction", MASK_HASH]


def defect_pixels(mask: np.ndarray) -> np.ndarray:
    """(H, W) booleans: the pixels above half the mask's maximum (any channel)."""
    grey = mask.max(axis=2) if mask.ndim == 3 else mask
    top = grey.max() if grey.size else 0
    return grey > top / 2 if top > 0 else np.zeros(grey.shape, dtype=bool)


def mask_facts(mask: np.ndarray) -> dict:
    grey = mask.max(axis=2)
    top = grey.max()
    nonzero = int((grey > 0).sum())
    soft = int(((grey > 0) & (grey < top)).sum())
    return {
        MASK_ERROR: "",
        "mask_height": int(mask.shape[0]),
        "mask_width": int(mask.shape[1]),
        "mask_defect_pixels": int(defect_pixels(mask).sum()),
        "mask_soft_fraction": soft / nonzero if nonzero else 0.0,
        MASK_HASH: pixel_hash(mask),
    }


def _no_mask(error: str = "") -> dict:
    return {
        MASK_ERROR: error,
        "mask_height": 0,
        "mask_width": 0,
        "mask_defect_pixels": 0,
        "mask_soft_fraction": float("nan"),
        MASK_HASH: "",
    }


def listing_facts(root: Path, listing: pd.DataFrame) -> pd.DataFrame:
    """The listing plus the facts of each image (shared image facts) and of its mask, if any."""
    images = file_facts(root, listing["path"].tolist()).drop(columns=["path"])
    masks = []
    for rel in listing[MASK_PATH]:
        if not rel:
            masks.append(_no_mask())
            continue
        try:
            masks.append(mask_facts(read_image(root / rel)))
        except DataError as err:
            masks.append(_no_mask(f"{rel}: {str(err).split(': ', 1)[-1]}"))
    return pd.concat([listing.reset_index(drop=True), images, pd.DataFrame(masks, columns=MASK_COLUMNS)], axis=1)


def gated_mask(root: Path, rel: str, expected_hash: str) -> np.ndarray:
    """The binarised (H, W) mask at `rel`, checked against the hash the gate saw."""
    mask = read_image(root / rel)
    if pixel_hash(mask) != expected_hash:
        raise DataError(f"{rel}: changed since it passed the gate; run acquire again (dvc repro)")
    return defect_pixels(mask)
