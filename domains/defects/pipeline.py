"""The defect domain's acquire and prepare steps: a source folder in, resized images and masks out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from domains.common.errors import PipelineError
from domains.common.images import gated_pixels, to_size
from domains.common.items import ID, LABEL, SPLIT
from domains.defects.checks import COUNTS, split_counts, with_gate_columns
from domains.defects.loaders import (
    CATEGORY,
    MASK_PATH,
    MASKS_EXPECTED,
    read_magnetic_tile,
    read_mvtec,
    read_mvtec_categories,
)
from domains.defects.masks import MASK_HASH, gated_mask, listing_facts
from domains.defects.params import DefectsParams
from domains.defects.synthetic import categories as synthetic_categories
from domains.defects.synthetic import write_mvtec
from domains.defects.tiles import aspect_tiles

SYNTHETIC_DIR = "mvtec"  # acquire/: the generated dataset, in MVTec's layout
IMAGES, MASKS, ITEMS, INFO = "images.npy", "masks.npy", "items.parquet", "info.json"
TILES, TILE_OWNER = "tiles.npy", "tile_owner.npy"  # prepare.tiles: the images' aspect-kept tiles (tiles.py)


def source_root(p: DefectsParams, acquire_dir: Path) -> Path:
    """The folder image paths are relative to: the generated dataset, or the user's (only ever read)."""
    return acquire_dir / SYNTHETIC_DIR if p.data.source == "synthetic" else Path(p.data.path)


def categories(p: DefectsParams) -> list[str]:
    """The category folders of a multi-category source (one model learns them all); empty for one category."""
    return synthetic_categories(p.synthetic) if p.data.source == "synthetic" else p.data.categories or []


def acquire(p: DefectsParams, out_dir: Path) -> pd.DataFrame:
    """One row of facts per image and mask; the payload stays where it is."""
    root = source_root(p, out_dir)
    synthetic = p.data.source == "synthetic"
    if synthetic:
        write_mvtec(p.synthetic, p.seed, root)
    if p.data.source == "magnetic-tile":
        listing = read_magnetic_tile(
            root,
            p.data.val_fraction,
            p.data.test_good_fraction,
            p.seed,
            p.data.split,
            Path(p.data.train_list) if p.data.train_list else None,
        )
    elif categories(p):
        listing = read_mvtec_categories(root, categories(p), p.data.val_fraction, p.seed)
    else:
        listing = read_mvtec(root, p.data.val_fraction, p.seed, p.synthetic.category if synthetic else None)
    return with_gate_columns(listing_facts(root, listing))


def prepare(p: DefectsParams, table: pd.DataFrame, acquire_dir: Path, out_dir: Path) -> None:
    """Images and masks of the gated rows at prepare.image_size, checked against the hashes the gate saw."""
    _check_counts(p, table)
    root = source_root(p, acquire_dir)
    size = p.prepare.image_size
    channels = int(table["channels"].mode().iloc[0])
    pixels = gated_pixels(root, table)
    images = np.stack([to_size(a, (size, size), channels) for a in pixels])
    tile_count = 0
    if p.prepare.tiles:
        tiles = aspect_tiles(pixels, size, channels)
        np.save(out_dir / TILES, tiles.images)
        np.save(out_dir / TILE_OWNER, tiles.owner)
        tile_count = len(tiles.images)
    del pixels  # the source images at full size: not kept while the masks are read
    masks = np.zeros((len(table), size, size), dtype=np.uint8)
    for i, (rel, expected) in enumerate(zip(table[MASK_PATH], table[MASK_HASH])):
        if rel:
            masks[i] = resize_mask(gated_mask(root, rel, expected), size)
    np.save(out_dir / IMAGES, images)
    np.save(out_dir / MASKS, masks)
    items = pd.DataFrame(
        {
            ID: table[ID].to_numpy(),
            SPLIT: table[SPLIT].to_numpy(),
            LABEL: table[LABEL].to_numpy(),
            CATEGORY: table[CATEGORY].to_numpy(),
            "has_mask": (table[MASK_PATH] != "").to_numpy(),
            "height": table["height"].to_numpy(),
            "width": table["width"].to_numpy(),
        }
    )
    items.to_parquet(out_dir / ITEMS)
    info = {
        "source": p.data.source,
        "image_size": size,
        "channels": channels,
        "pixel_metrics": bool(table[MASKS_EXPECTED].all()),
        "tiles": tile_count,
        "images": {split: int((items[SPLIT] == split).sum()) for split in ("train", "val", "test")},
    }
    (out_dir / INFO).write_text(json.dumps(info, indent=2))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A boolean mask at (size, size): a pixel is a defect where at least half of it was."""
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return (np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)) >= 128).astype(
        np.uint8
    )


def _check_counts(p: DefectsParams, table: pd.DataFrame) -> None:
    """The gate's counts again, after quarantine (a quarantined image no longer counts), and for each category
    of a multi-category source (each has its own model and threshold)."""
    groups = [("", table)]
    if table[CATEGORY].nunique() > 1:
        groups += [(f"category '{c}': ", rows) for c, rows in table.groupby(CATEGORY, sort=False)]
    for prefix, rows in groups:
        for column, have in split_counts(rows).items():
            _, _, bound, check = COUNTS[column]
            if have < getattr(p.gate, bound):
                raise PipelineError(
                    f"prepare: {check}: {prefix}{have} {column.replace('_', ' ')} passed the gate, "
                    f"fewer than gate.{bound}={getattr(p.gate, bound)}"
                )
