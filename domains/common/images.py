"""Images as gated items, shared by the image domains: decoding, per-image facts, their checks,
and reading the pixels of the items that passed the gate.

An image is addressed by `path` (relative to the source: a folder, or an .npz file) and `member`
(inside an .npz: "<array>/<index>", e.g. "test_images/17"; empty for an image file). `acquire`
records one row of facts per image; the payload stays where it is. Later stages read pixels
through `read_pixels`, which checks each image's content hash against the gated row, so a model
never trains on an image that changed after the gate.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
from PIL import Image, UnidentifiedImageError

from domains.common.errors import DataError
from domains.common.items import HASH, content_hash
from domains.common.params import ImageGateParams, Severity

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PATH, MEMBER = "path", "member"
DECODE_ERROR = "decode_error"
SHAPE = "shape"  # "HxWxC", the image as decoded
RESIZED = "resized"  # scoring's facts only: the decoded image at the model's size (see file_facts)
READ_THREADS = min(4, os.cpu_count() or 1)  # file_facts: more than the cores only queue

# Largest value of each pixel type; float images are expected in [0, 1].
VALUE_MAX = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0, "float64": 1.0, "bool": 1.0}

IMAGE_SEVERITIES: dict[str, Severity] = {
    "pixel_std:not_constant": "quarantine",  # a blank or constant image teaches nothing
    "saturated_fraction:not_saturated": "quarantine",
}


def read_image(path: Path) -> np.ndarray:
    """An image file as (H, W, C) uint8 or uint16; truncated or undecodable files raise DataError."""
    try:
        with Image.open(path) as image:
            image.load()  # decode fully now: a truncated file fails here, not later
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.uint16 if image.mode.startswith("I;16") else np.int32)
            elif image.mode in ("L", "RGB"):
                array = np.asarray(image)
            elif image.mode == "1":
                array = np.asarray(image.convert("L"))
            else:  # palette, RGBA, CMYK...: to RGB (alpha carries no content here)
                array = np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise DataError(f"{path.name}: not an image (no known image format)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path.name}: {err}") from None
    return array[:, :, None] if array.ndim == 2 else array


def pixel_hash(array: np.ndarray) -> str:
    """Content hash of decoded pixels: the same picture saved twice (or as another file) hashes the same."""
    return content_hash(f"{array.dtype}{array.shape}".encode() + np.ascontiguousarray(array).tobytes())


def image_facts(array: np.ndarray) -> dict:
    """What the gate checks about one decoded (H, W, C) image."""
    dtype = str(array.dtype)
    scale = 255.0 / VALUE_MAX.get(dtype, 255.0)  # std on a 0-255 scale, whatever the type
    if dtype in ("uint8", "uint16"):
        nan_pixels, low, high, mean, std, saturated = 0, *_unsigned_stats(array)
    else:
        values = array.astype(np.float64)
        present = values.ravel() if array.dtype.kind in "iub" else values[np.isfinite(values)]
        top = VALUE_MAX[dtype] if dtype in VALUE_MAX else float(np.nanmax(values)) if present.size else 1.0
        nan_pixels = int(values.size - present.size)
        low = float(present.min()) if present.size else float("nan")
        high = float(present.max()) if present.size else float("nan")
        mean = float(present.mean()) if present.size else float("nan")
        std = float(present.std()) if present.size else 0.0  # all NaN: constant
        saturated = float(np.mean((values <= 0.0) | (values >= top)))
    return {
        DECODE_ERROR: "",
        "height": int(array.shape[0]),
        "width": int(array.shape[1]),
        "channels": int(array.shape[2]),
        SHAPE: f"{array.shape[0]}x{array.shape[1]}x{array.shape[2]}",
        "dtype": dtype,
        "nan_pixels": nan_pixels,
        "pixel_min": low,
        "pixel_max": high,
        "pixel_mean": mean * scale,
        "pixel_std": std * scale,
        "saturated_fraction": saturated,
        HASH: pixel_hash(array),
    }


def _unsigned_stats(array: np.ndarray) -> tuple[float, float, float, float, float]:
    """min, max, mean, std and saturated share of 8- or 16-bit pixels from their histogram, in exact integer
    arithmetic: no float copy of the image (touching its fresh memory cost more than the statistics)."""
    counts = np.bincount(array.ravel(), minlength=int(VALUE_MAX[str(array.dtype)]) + 1)
    n = array.size
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0.0, float("nan")
    levels = np.flatnonzero(counts)
    weights = counts[levels].astype(np.int64)
    total = int(levels @ weights)
    squares = int((levels * levels) @ weights)  # < 2**63 for any image under 2**31 pixels
    variance = (n * squares - total * total) / (n * n)  # Python integers: exact until this division
    return (
        float(levels[0]),
        float(levels[-1]),
        total / n,
        float(np.sqrt(variance)),
        (int(counts[0]) + int(counts[-1])) / n,
    )


def failed_facts(error: str) -> dict:
    """The facts row of an image that did not decode: the gate's `decode_error` check names it."""
    nan = float("nan")  # no pixels: only `decodes` fails for this row
    return {
        DECODE_ERROR: error,
        "height": 0,
        "width": 0,
        "channels": 0,
        SHAPE: "",
        "dtype": "",
        "nan_pixels": 0,
        "pixel_min": nan,
        "pixel_max": nan,
        "pixel_mean": nan,
        "pixel_std": nan,
        "saturated_fraction": nan,
        HASH: f"undecoded:{error}",
    }


def file_facts(base: Path, relative: list[str], size: int | None = None) -> pd.DataFrame:
    """Facts of image files under `base` (one row each, in order); a file that does not decode gets its error.

    With `size`, a RESIZED column also keeps each image as `resized` makes it (None where it did not decode):
    scoring then decodes each file once, and its model sees the very pixels the gate judged. Files are read
    by a few threads (decoding, resizing and hashing release the GIL); the rows keep the listing's order."""

    def row(rel: str) -> dict:
        try:
            array = read_image(base / rel)
            kept = {RESIZED: resized(array, (size, size))} if size is not None else {}
            return {PATH: rel, MEMBER: "", **image_facts(array), **kept}
        except DataError as err:
            failed = failed_facts(str(err).split(": ", 1)[-1])  # the row names the file
            return {PATH: rel, MEMBER: "", **failed, **({RESIZED: None} if size is not None else {})}

    with ThreadPoolExecutor(READ_THREADS) as pool:
        return pd.DataFrame(list(pool.map(row, relative)))


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, by name (other files are for the caller to judge)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# --- checks -------------------------------------------------------------------------------------


def _in_value_range(table: pd.DataFrame) -> pd.Series:
    """Pixel values inside their type's range ([0, 1] for float images)."""
    high = table["dtype"].map(VALUE_MAX).fillna(np.inf)
    return (table["pixel_min"].fillna(0) >= 0) & (table["pixel_max"].fillna(0) <= high)


def _most_common(values: pd.Series) -> pd.Series:
    decoded = values[values != ""]
    return values == (decoded.mode().iloc[0] if len(decoded) else "")


def image_columns(p: ImageGateParams) -> dict[str, pa.Column]:
    """Per-image checks: decodes, a supported pixel type, no NaN, not constant, not saturated, a consistent shape."""
    shape_checks = [pa.Check(lambda s: (s == "") | _most_common(s), name="consistent")] if p.consistent_shape else []
    return {
        PATH: pa.Column("str"),
        MEMBER: pa.Column("str"),
        DECODE_ERROR: pa.Column("str", pa.Check.equal_to("", name="decodes")),
        SHAPE: pa.Column("str", shape_checks),
        "dtype": pa.Column("str", pa.Check(lambda s: (s == "") | s.isin(list(VALUE_MAX)), name="supported")),
        "nan_pixels": pa.Column("int64", pa.Check.equal_to(0, name="none")),
        "pixel_std": pa.Column("float64", pa.Check.gt(p.min_pixel_std, name="not_constant"), nullable=True),
        "saturated_fraction": pa.Column(
            "float64", pa.Check.le(p.max_saturated_fraction, name="not_saturated"), nullable=True
        ),
    }


def image_table_checks() -> list[pa.Check]:
    return [pa.Check(_in_value_range, name="pixel_values_in_range")]


# --- pixels for training ------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _npz_array(file: Path, key: str) -> np.ndarray:
    with np.load(file, allow_pickle=False) as data:
        return data[key]


def read_pixels(source: Path, path: str, member: str) -> np.ndarray:
    """The (H, W, C) pixels of one item: an image file under `source`, or `member` of the .npz `source`."""
    if member:
        key, _, index = member.rpartition("/")
        array = _npz_array(source if source.is_file() else source / path, key)[int(index)]
        return array[:, :, None] if array.ndim == 2 else array
    return read_image(source / path)


def gated_pixels(source: Path, table: pd.DataFrame) -> list[np.ndarray]:
    """The pixels of every row of a gated table, each checked against the hash the gate saw."""
    images = []
    for path, member, expected in zip(table[PATH], table[MEMBER], table[HASH]):
        array = read_pixels(source, path, member)
        if pixel_hash(array) != expected:
            raise DataError(f"{member or path}: changed since it passed the gate; run acquire again (dvc repro)")
        images.append(array)
    return images


def to_size(array: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """(H, W, C) -> (channels, h, w) uint8, resized with antialiasing; grey <-> RGB as asked."""
    return as_channels(resized(array, size), channels)


def resized(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) -> (h, w) grey or (h, w, 3) RGB uint8: `to_size` before its channel conversion."""
    if array.dtype != np.uint8:  # 16-bit or float: to the 0-255 range of its type
        array = np.clip(array.astype(np.float64) / VALUE_MAX.get(str(array.dtype), 255.0) * 255.0, 0, 255).astype(
            np.uint8
        )
    mode = "L" if array.shape[2] == 1 else "RGB"
    image = Image.fromarray(array[:, :, 0] if mode == "L" else array[:, :, :3], mode)
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(image)


def as_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A `resized` image as (channels, h, w) uint8: grey <-> RGB as asked."""
    mode = "L" if image.ndim == 2 else "RGB"
    out = np.asarray(Image.fromarray(image, mode).convert("L" if channels == 1 else "RGB"))
    return (out[None] if channels == 1 else out.transpose(2, 0, 1)).copy()
