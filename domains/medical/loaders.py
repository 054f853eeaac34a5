"""Read medical image sources into the table of per-image facts that the gate checks.

- `medmnist`: one MedMNIST .npz: <split>_images (N, H, W) or (N, H, W, 3), any resolution, and
  <split>_labels (N, 1) class indices, for the splits train, val and test.
- `image-folder`: <split>/<class>/<image> (the ImageFolder convention) for train and test, and
  val when present (otherwise a seeded, stratified share of train).

Loaders parse structure only: pixel values, labels and duplicates stay as read, so the gate sees
and reports them. A file that is not an .npz, missing arrays, images and labels of different
lengths, images of the wrong rank, missing splits and empty folders raise DataError in one line.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from domains.common.errors import DataError
from domains.common.images import MEMBER, PATH, file_facts, image_facts
from domains.common.items import ID, LABEL, SPLIT, SPLITS, stratified_split


def read_medmnist(file: Path, classes: list[str]) -> pd.DataFrame:
    """One facts row per image of a MedMNIST .npz; label i is named classes[i] (an index outside
    the classes keeps its number, and fails the gate's class check)."""
    arrays = _open_npz(file)
    rows = []
    for split in SPLITS:
        images, labels = _split_arrays(arrays, split, file)
        for i, (image, label) in enumerate(zip(images, labels)):
            rows.append(
                {
                    ID: f"{split}/{i}",
                    SPLIT: split,
                    LABEL: _class_name(label, classes),
                    PATH: file.name,
                    MEMBER: f"{split}_images/{i}",
                    **image_facts(_hwc(image)),
                }
            )
    return pd.DataFrame(rows)


def _open_npz(file: Path) -> dict[str, np.ndarray]:
    if not file.is_file():
        raise DataError(f"{file}: no such file (medmnist reads one .npz, e.g. pneumoniamnist.npz)")
    if not zipfile.is_zipfile(file):
        raise DataError(f"{file}: not an .npz archive (MedMNIST files are numpy .npz)")
    try:
        with np.load(file, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise DataError(f"{file}: not a readable .npz ({str(err).splitlines()[0]})") from None


def _split_arrays(arrays: dict[str, np.ndarray], split: str, file: Path) -> tuple[np.ndarray, np.ndarray]:
    missing = [k for k in (f"{split}_images", f"{split}_labels") if k not in arrays]
    if missing:
        raise DataError(
            f"{file.name}: missing array(s) {', '.join(missing)}; a MedMNIST .npz has "
            f"{', '.join(f'{s}_images, {s}_labels' for s in SPLITS)} (has: {', '.join(sorted(arrays))})"
        )
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise DataError(f"{file.name}: {split}_images has shape {images.shape}; expected (N, H, W) or (N, H, W, 3)")
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise DataError(
            f"{file.name}: {split}_labels has shape {labels.shape}: multi-label data (e.g. ChestMNIST) "
            "is not supported; one class per image, shape (N, 1)"
        )
    labels = labels.reshape(len(labels), -1)[:, 0] if labels.ndim else labels
    if len(images) != len(labels):
        raise DataError(
            f"{file.name}: {split}_images holds {len(images)} images but {split}_labels {len(labels)} labels"
        )
    if len(images) == 0:
        raise DataError(f"{file.name}: {split}_images is empty")
    return images, labels


def _class_name(label, classes: list[str]) -> str:
    if isinstance(label, (np.integer, int)) or (isinstance(label, np.floating) and float(label).is_integer()):
        index = int(label)
        return classes[index] if 0 <= index < len(classes) else str(index)
    return str(label)


def _hwc(image: np.ndarray) -> np.ndarray:
    return image[:, :, None] if image.ndim == 2 else image


def read_image_folder(root: Path, val_fraction: float, seed: int) -> pd.DataFrame:
    """One facts row per image under root/<split>/<class>/; val carved from train when absent."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (image-folder reads <split>/<class>/<image>)")
    present = [s for s in SPLITS if (root / s).is_dir()]
    missing = [s for s in ("train", "test") if s not in present]
    if missing:
        found = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) or "none"
        raise DataError(
            f"{root}: missing split folder(s) {', '.join(missing)} (found: {found}); "
            "image-folder needs train/ and test/ (val/ optional)"
        )
    rows = []
    for split in present:
        class_dirs = sorted(p for p in (root / split).iterdir() if p.is_dir())
        if not class_dirs:
            raise DataError(f"{root / split}: no class folders (expected {split}/<class>/<image>)")
        for class_dir in class_dirs:
            files = sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
            if not files:
                raise DataError(f"{class_dir}: empty class folder")
            rows += [
                {
                    ID: f"{split}/{class_dir.name}/{f.name}",
                    SPLIT: split,
                    LABEL: class_dir.name,
                    PATH: f"{split}/{class_dir.name}/{f.name}",
                }
                for f in files
            ]
    table = pd.DataFrame(rows)
    facts = file_facts(root, table[PATH].tolist())  # files of other types get a decode error, named by the gate
    table = pd.concat([table, facts.drop(columns=[PATH])], axis=1)
    if "val" not in present:
        train = (table[SPLIT] == "train").to_numpy()
        carved = stratified_split(table.loc[train, LABEL].to_numpy(), val_fraction, seed)
        table.loc[np.flatnonzero(train)[carved], SPLIT] = "val"
    return table


def read_medmnist_batch(file: Path, classes: list[str]) -> pd.DataFrame:
    """Images to score from an .npz: test_images (and test_labels when present) if it has them, else
    every <name>_images array (labels from <name>_labels where present). Labels are optional."""
    arrays = _open_npz(file)
    keys = ["test_images"] if "test_images" in arrays else sorted(k for k in arrays if k.endswith("_images"))
    if not keys:
        raise DataError(
            f"{file.name}: no <name>_images array to score (has: {', '.join(sorted(arrays)) or 'nothing'}); "
            "a MedMNIST .npz has test_images"
        )
    rows = []
    for key in keys:
        name = key.removesuffix("_images")
        images, labels = arrays[key], arrays.get(f"{name}_labels")
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
            raise DataError(f"{file.name}: {key} has shape {images.shape}; expected (N, H, W) or (N, H, W, 3)")
        if labels is not None:
            labels = _split_labels(labels, len(images), file, name)
        for i, image in enumerate(images):
            rows.append(
                {
                    ID: f"{name}/{i}",
                    PATH: file.name,
                    MEMBER: f"{key}/{i}",
                    **image_facts(_hwc(image)),
                    **({LABEL: _class_name(labels[i], classes)} if labels is not None else {}),
                }
            )
    if not rows:
        raise DataError(f"{file.name}: {', '.join(keys)} hold no images")
    return pd.DataFrame(rows)


def _split_labels(labels: np.ndarray, n: int, file: Path, name: str) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise DataError(
            f"{file.name}: {name}_labels has shape {labels.shape}: multi-label data is not supported; "
            "one class per image, shape (N, 1)"
        )
    labels = labels.reshape(len(labels), -1)[:, 0] if labels.ndim else labels
    if len(labels) != n:
        raise DataError(f"{file.name}: {name}_images holds {n} images but {name}_labels {len(labels)} labels")
    return labels
