"""Scoring new images, shared by the image domains (medical, defects).

- `read_folder_chunks`: a flat folder of images, or <label>/<image>, into the per-image facts table the
  image gate checks (`domains.common.images`), each image decoded once: its facts and, in a `resized`
  column, the image at the model's size, which the scorer uses (the pixels the gate judged); in pieces;
- `scoring_schema_columns`: the gate's per-image columns without the split and label checks;
- `model_inputs`: the gated images at the model's size and channels, resized as `prepare` did (from
  the `resized` column, or read again from the `root` column's folder or .npz, checked against their hash);
- drift: each image's facts (native size and channels, intensity mean and std of what the model
  sees) and its `embedding_distance`, computed alike for the training split (the reference) and for
  a batch (see `save_embeddings`);
- `check_as_trained`: a batch whose size or channels the training images never had stops in one
  line, before scoring (where training saw many sizes, e.g. Magnetic-Tile, size is not checked);
- `write_maps`: a heat map over its image as a PNG per item.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from domains.common.errors import DataError, PipelineError
from domains.common.images import (
    IMAGE_SUFFIXES,
    MEMBER,
    PATH,
    READ_THREADS,
    RESIZED,
    as_channels,
    file_facts,
    gated_pixels,
    image_columns,
    image_table_checks,
    pixel_hash,
    to_size,
)
from domains.common.items import HASH, ID, LABEL
from domains.common.modelstore import PROFILE
from domains.common.params import ImageGateParams

ROOT = "root"  # the folder (or .npz) a batch's paths are relative to
DRIFT_COLUMNS = ("height", "width", "channels", "pixel_mean", "pixel_std", "embedding_distance")
SHAPE_COLUMNS = ("height", "width", "channels")  # checked against training where it saw few distinct values


def read_folder_chunks(root: Path, what: str, size: int, rows: int) -> Iterator[pd.DataFrame]:
    """One facts row per file of `root` (flat) or of `root`/<label>/ (the label column then names it), with
    the image resized to `size` (the model's) in a RESIZED column; in pieces of at most `rows` files (0: one
    piece), in listing order, the row index counting on across pieces. Only file names are listed up front:
    each piece's images are decoded as it is read, so a folder larger than memory is scored piece by piece.

    `what` completes one-line errors (the layouts the domain accepts). Every non-hidden file is
    listed: one that does not decode is a failed `decode_error:decodes` check naming it.
    """
    listing = _listing(root, what)
    step = rows or len(listing)
    for start in range(0, len(listing), step):
        part = listing.iloc[start : start + step]
        facts = file_facts(root, part[PATH].tolist(), size).set_index(part.index)
        yield pd.concat([part, facts.drop(columns=[PATH])], axis=1).assign(**{ROOT: str(root.resolve())})


@dataclass(frozen=True)
class ShadowCarry:
    """What a chunk hands the next (ScoreOptions.carry) for the batch's shadow evaluation: the labels and
    scores of the images so far, while every one of them had a label (a few bytes an image)."""

    labelled: bool
    labels: np.ndarray  # class index (medical) or 1 = defective (defects)
    scores: np.ndarray  # the model's scores or class probabilities, one row per image

    @staticmethod
    def after(previous: ShadowCarry | None, labelled: bool, labels: np.ndarray, scores: np.ndarray) -> ShadowCarry:
        if not labelled or (previous is not None and not previous.labelled):
            return ShadowCarry(False, np.zeros(0, np.int8), np.zeros(0))
        if previous is None:
            return ShadowCarry(True, labels, scores)
        return ShadowCarry(True, np.concatenate([previous.labels, labels]), np.concatenate([previous.scores, scores]))


def _listing(root: Path, what: str) -> pd.DataFrame:
    """The image files to score: id, path and, from <label>/ folders, label."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of images ({what})")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    folders, files = [p for p in entries if p.is_dir()], [p for p in entries if p.is_file()]
    if folders and files:
        raise DataError(
            f"{root}: holds both files ({files[0].name}) and folders ({folders[0].name}); "
            f"put every image either directly in it or in <label>/ folders ({what})"
        )
    rows = [{ID: f.name, PATH: f.name} for f in files]
    for folder in folders:
        inside = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if not inside:
            raise DataError(f"{folder}: no image files ({what})")
        rows += [{ID: f"{folder.name}/{f.name}", PATH: f"{folder.name}/{f.name}", LABEL: folder.name} for f in inside]
    if not rows:
        raise DataError(f"{root}: no images to score ({what})")
    return pd.DataFrame(rows)


def scoring_schema_columns(p: ImageGateParams) -> dict[str, pa.Column]:
    """Per-image checks of a batch to score: unique ids and the training gate's image checks."""
    return {
        ID: pa.Column("str", unique=True, report_duplicates="exclude_first"),
        HASH: pa.Column("str"),
        **image_columns(p),
    }


def _no_duplicates(table: pd.DataFrame) -> pd.Series:
    return ~table.duplicated(HASH, keep="first")


def scoring_table_checks() -> list[pa.Check]:
    """Pixel values in range; the same picture twice in a batch (warn, as in training)."""
    return [*image_table_checks(), pa.Check(_no_duplicates, name="duplicate_items")]


def model_inputs(table: pd.DataFrame, size: int, channels: int) -> np.ndarray:
    """(N, channels, size, size) uint8: each gated image resized as prepare does; from the RESIZED column
    where read_folder_chunks kept it at this size (the pixels the gate judged: nothing to check again), else read
    again and checked against its hash."""
    if table.empty:
        return np.zeros((0, channels, size, size), dtype=np.uint8)
    if RESIZED in table and all(isinstance(x, np.ndarray) and x.shape[:2] == (size, size) for x in table[RESIZED]):
        return np.stack([as_channels(x, channels) for x in table[RESIZED]])
    return np.stack([to_size(x, (size, size), channels) for x in batch_pixels(table)])


def batch_pixels(table: pd.DataFrame) -> list[np.ndarray]:
    """The (H, W, C) source pixels of a gated batch, read again and checked against their hash."""
    return _gated(Path(table[ROOT].iloc[0]), table) if len(table) else []


def _gated(root: Path, table: pd.DataFrame) -> list[np.ndarray]:
    """gated_pixels, with an .npz opened afresh: images.read_pixels caches arrays by file name, and a
    long-lived process (the scoring deployment) scores a new file at the same path every day."""
    if root.is_dir():
        return gated_pixels(root, table)
    with np.load(root, allow_pickle=False) as data:
        arrays = {key: data[key] for key in {member.rpartition("/")[0] for member in table[MEMBER]}}
    images = []
    for member, expected in zip(table[MEMBER], table[HASH]):
        key, _, index = member.rpartition("/")
        array = arrays[key][int(index)]
        array = array[:, :, None] if array.ndim == 2 else array
        if pixel_hash(array) != expected:
            raise DataError(f"{member}: changed since it passed the gate; score the batch again")
        images.append(array)
    return images


def intensity(images: np.ndarray) -> pd.DataFrame:
    """pixel_mean and pixel_std (0-255) of uint8 model inputs (N, C, H, W), as the gate's facts define them."""
    flat = images.reshape(len(images), -1)
    mean, std = np.empty(len(flat)), np.empty(len(flat))
    for start in range(0, len(flat), 32):  # in blocks: a float copy of the whole batch costs its first touch
        part = flat[start : start + 32].astype(np.float64)
        mean[start : start + 32], std[start : start + 32] = part.mean(axis=1), part.std(axis=1)
    return pd.DataFrame({"pixel_mean": mean, "pixel_std": std})


def drift_frame(height: np.ndarray, width: np.ndarray, images: np.ndarray, distance: np.ndarray) -> pd.DataFrame:
    """The drift columns: native size, the model's channels, intensity of what the model sees, and the
    distance of its embedding to the training split's (`embedding_distances`)."""
    return pd.DataFrame(
        {
            "height": np.asarray(height, dtype=np.int64),
            "width": np.asarray(width, dtype=np.int64),
            "channels": np.full(len(images), images.shape[1], dtype=np.int64),
            **intensity(images),
            "embedding_distance": np.asarray(distance, dtype=np.float64),
        }
    )


# Embedding drift: what the model itself makes of the images. Size and intensity miss a batch that is
# rotated, mirrored or of another kind of image at the same brightness; the model's own features do not.
# Each image's distance is the mean distance to its NEIGHBOURS nearest training embeddings (each feature
# standardised by the training split's spread); the training split's own distances leave each image's own
# entry out, so reference and batch are measured alike. Chosen over the distance to the training centroid
# on PneumoniaMNIST (3-epoch CNN, PSI against the training reference): test split 0.03 vs 0.14,
# inverted 2.2 vs 0.45, rotated 0.73 vs 0.07, mirrored top-bottom 0.70 vs 0.20. Its cost: a batch of one
# class only moves it too (normal radiographs only: 1.4 vs 0.21), as it moves the score drift.
EMBEDDINGS = "embeddings.npz"  # in the trained model's folder: the bank of training embeddings
BANK = 2048  # training embeddings kept (seeded): the cost of a batch's distances is bounded
NEIGHBOURS = 5


def save_embeddings(model_dir: Path, model: str, embeddings: np.ndarray, seed: int) -> np.ndarray:
    """Keep the training split's embeddings (N, D) under `model` in `model_dir`; return each training image's
    distance to the others (the reference of `embedding_distance`). Written at training time, so the
    file is one of the model's, verified by its DVC hash before scoring reads it."""
    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) <= NEIGHBOURS:
        raise DataError(f"{len(x)} training images: too few for embedding drift (more than {NEIGHBOURS} needed)")
    mean, std = x.mean(axis=0), x.std(axis=0)
    scale = np.maximum(std, 1e-3 * std.mean() + 1e-12)  # a feature constant in training does not divide by 0
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:BANK])
    bank = ((x[keep] - mean) / scale).astype(np.float32)
    np.savez(model_dir / EMBEDDINGS, model=np.array(model), mean=mean, scale=scale, bank=bank)
    self_column = np.full(len(x), -1)
    self_column[keep] = np.arange(len(keep))
    return _knn_distance((x - mean) / scale, bank, self_column)


def _saved(model_dir: Path) -> dict[str, np.ndarray]:
    file = model_dir / EMBEDDINGS
    if not file.is_file():
        raise PipelineError(
            f"this model was trained before embedding drift existed (no {EMBEDDINGS}); retrain it and promote it"
        )
    with np.load(file, allow_pickle=False) as saved:
        return {key: saved[key] for key in saved.files}


def embedding_model(model_dir: Path) -> str:
    """Which trained model's embeddings the bank holds."""
    return str(_saved(model_dir)["model"])


def embedding_distances(model_dir: Path, embeddings: np.ndarray) -> np.ndarray:
    """Each embedding's distance to the training split's, as `save_embeddings` measured the reference."""
    saved = _saved(model_dir)
    mean, scale, bank = saved["mean"], saved["scale"], saved["bank"]
    x = (np.asarray(embeddings, dtype=np.float64) - mean) / scale
    return _knn_distance(x, bank, np.full(len(x), -1))


def _knn_distance(x: np.ndarray, bank: np.ndarray, self_column: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Mean Euclidean distance (per feature: / sqrt(D)) of each row to its NEIGHBOURS nearest bank rows;
    row i's own bank entry `self_column[i]` (-1: none) is left out."""
    out = np.empty(len(x))
    b = bank.astype(np.float64)
    b2 = (b**2).sum(axis=1)
    for start in range(0, len(x), chunk):
        rows = x[start : start + chunk]
        d2 = np.maximum((rows**2).sum(axis=1)[:, None] - 2 * rows @ b.T + b2[None, :], 0.0)
        own = self_column[start : start + chunk]
        d2[np.flatnonzero(own >= 0), own[own >= 0]] = np.inf
        nearest = np.partition(d2, NEIGHBOURS - 1, axis=1)[:, :NEIGHBOURS]
        out[start : start + chunk] = np.sqrt(nearest).mean(axis=1) / np.sqrt(x.shape[1])
    return out


def trained_values(model_dir: Path) -> dict[str, list[int]]:
    """The heights, widths and channel counts of the training images, where the profile lists them
    (a column with few distinct values is profiled as categories; many sizes are not checked)."""
    columns = json.loads((model_dir / PROFILE).read_text())["columns"]
    return {
        name: sorted(int(float(k)) for k in columns[name]["categories"])
        for name in SHAPE_COLUMNS
        if columns.get(name, {}).get("kind") == "categorical"
    }


def model_channels(model_dir: Path) -> int:
    """The channel count the model was trained on."""
    values = trained_values(model_dir).get("channels")
    if not values or len(values) != 1:
        raise DataError(f"{model_dir}: the model's profile does not name one channel count; retrain it")
    return values[0]


def check_as_trained(model_dir: Path, table: pd.DataFrame, domain: str) -> None:
    """Stop in one line when images have a size or channel count the training images never had."""
    known = trained_values(model_dir)
    for name, values in known.items():
        odd = table.loc[~table[name].astype(int).isin(values), [ID, name]]
        if len(odd):
            have = ", ".join(sorted({str(v) for v in odd[name]}))
            raise DataError(
                f"{domain}: {len(odd)} image(s) have {name} {have} (e.g. {odd[ID].iloc[0]}); the model "
                f"was trained on images with {name} {', '.join(map(str, values))}: "
                + ("convert them (grey: 1, RGB: 3)" if name == "channels" else "resize them")
                + " or score with a model trained on such images"
            )


def safe_name(item_id: str) -> str:
    """A file name for an item id, without its image suffix ('pneumonia/3.png' -> 'pneumonia__3')."""
    stem = item_id[: -len(Path(item_id).suffix)] if Path(item_id).suffix.lower() in IMAGE_SUFFIXES else item_id
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem.replace("/", "__"))


def write_maps(folder: Path, item_ids: list[str], images: np.ndarray, heat: np.ndarray, block: int = 16) -> None:
    """Each image (N, C, H, W uint8) in grey with its `heat` (N, H, W in [0, 1]) in red over it, as <item>.png.

    Colours are computed `block` images at a time (per image, numpy's call overhead dominates; for a whole batch,
    touching the fresh memory of its float temporaries does: 1.8 s instead of 0.03 for 583 maps of 64 px), blocks
    by a few threads (compressing and writing files release the GIL)."""
    folder.mkdir(parents=True, exist_ok=True)

    def write_block(start: int) -> None:
        part, h = images[start : start + block], np.clip(np.nan_to_num(heat[start : start + block]), 0, 1)
        grey = part.mean(axis=1) if part.shape[1] > 1 else part[:, 0].astype(np.float64)
        dimmed = grey * (1 - h)
        rgb = np.clip(np.round(np.stack([dimmed + 255 * h, dimmed, dimmed], axis=-1)), 0, 255).astype(np.uint8)
        for item_id, pixels in zip(item_ids[start : start + block], rgb):
            (folder / f"{safe_name(item_id)}.png").write_bytes(png_bytes(pixels))

    with ThreadPoolExecutor(READ_THREADS) as pool:
        list(pool.map(write_block, range(0, len(images), block)))  # list(): a worker's error is raised here


def png_bytes(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 image as a PNG file (8-bit RGB, no row filter, zlib level 1): a third of PIL's time for
    a small map, whose adaptive row filters buy a smaller file (5.3 vs 3.9 KB at 64 px) that nobody needs here."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, _ = rgb.shape
    rows = np.zeros((height, 1 + 3 * width), np.uint8)  # each row: filter type 0, then its pixels
    rows[:, 1:] = rgb.reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, deflate, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
        + chunk(b"IEND", b"")
    )
