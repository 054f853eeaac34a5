"""The medical imaging domain's acquire and prepare steps: a source in, gated pixels at one size out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from domains.common.images import gated_pixels, to_size
from domains.common.items import ID, LABEL, SPLIT, with_item_columns
from domains.medical.loaders import read_image_folder, read_medmnist
from domains.medical.params import MedicalParams
from domains.medical.synthetic import generate_images, write_npz

SYNTHETIC_NPZ = "synthetic.npz"  # acquire, synthetic source: the generated images, in MedMNIST's layout
TRUTH = "truth.parquet"  # synthetic only: each image's opacity load and whether its label was flipped
IMAGES = "images.npy"  # prepared: (N, C, S, S) uint8, rows in the order of ITEMS
ITEMS = "items.parquet"  # prepared: item_id, split, label (name), y (class index)
CLASSES = "classes.json"


def source(p: MedicalParams, acquire_dir: Path) -> Path:
    """Where the pixels are: the .npz or the folder the table's paths are relative to."""
    return acquire_dir / SYNTHETIC_NPZ if p.data.source == "synthetic" else Path(p.data.path)


def acquire(p: MedicalParams, out_dir: Path) -> pd.DataFrame:
    """The per-image facts of the configured source (the source is only read)."""
    if p.data.source == "synthetic":
        images = generate_images(p.synthetic, p.seed)
        write_npz(images, out_dir / SYNTHETIC_NPZ)
        images.truth.to_parquet(out_dir / TRUTH)
        table = read_medmnist(out_dir / SYNTHETIC_NPZ, p.data.classes)
    elif p.data.source == "medmnist":
        table = read_medmnist(Path(p.data.path), p.data.classes)
    else:
        table = read_image_folder(Path(p.data.path), p.data.val_fraction, p.seed)
    return with_item_columns(table)


def prepare(p: MedicalParams, table: pd.DataFrame, acquire_dir: Path, out_dir: Path) -> None:
    """Every gated image at prepare.image_size (grey, or RGB when the source is), with its class index."""
    channels = 1 if (table["channels"] == 1).all() else 3
    size = (p.prepare.image_size, p.prepare.image_size)
    pixels = gated_pixels(source(p, acquire_dir), table)
    np.save(out_dir / IMAGES, np.stack([to_size(x, size, channels) for x in pixels]))
    index = {name: i for i, name in enumerate(p.data.classes)}
    items = pd.DataFrame(
        {
            ID: table[ID].to_numpy(),
            SPLIT: table[SPLIT].to_numpy(),
            LABEL: table[LABEL].to_numpy(),
            "y": table[LABEL].map(index).astype("int64").to_numpy(),
        }
    )
    items.to_parquet(out_dir / ITEMS)
    (out_dir / CLASSES).write_text(json.dumps(p.data.classes))
    if (acquire_dir / TRUTH).is_file():
        truth = pd.read_parquet(acquire_dir / TRUTH)
        truth[ID] = truth[SPLIT] + "/" + truth["index"].astype(str)
        truth[truth[ID].isin(items[ID])].to_parquet(out_dir / TRUTH)


def load_prepared(prepared_dir: Path) -> tuple[np.ndarray, pd.DataFrame, list[str]]:
    return (
        np.load(prepared_dir / IMAGES),
        pd.read_parquet(prepared_dir / ITEMS),
        json.loads((prepared_dir / CLASSES).read_text()),
    )
