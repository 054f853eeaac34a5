"""List the images of an MVTec AD category folder or of the Magnetic-Tile-Defect release.

A listing has one row per image: item_id, split (train / val / test), label ("good" or the
defect type), path and mask_path (relative to the source folder; "" when there is no mask) and
masks_expected (whether the source publishes pixel masks for its defect images). Images and masks
are only listed here; their facts are read by `masks.listing_facts`, so a file that does not
decode becomes a failed gate check naming it, not an error here. Only an unreadable layout
(missing folders, no training images) raises DataError, in one line.

- mvtec: `train/good/*.png`, `test/<type>/*.png` (`good` among the types) and, optionally,
  `ground_truth/<type>/<stem>_mask.png`. Without `ground_truth` there are no masks: evaluation
  is image-level only. Every file in the image folders is listed (a stray non-image fails the
  gate), except hidden ones (".DS_Store" and the like).
- magnetic-tile: `MT_<class>/Imgs/<stem>.jpg` with `<stem>.png` masks; `MT_Free` holds the
  defect-free images. No split is published; ours (the benchmark protocol) tests every defect
  image and a seeded `test_good_fraction` of MT_Free, and trains on the rest of MT_Free.
  Its masks are anti-aliased (values between 0 and 255 on a defect's edge): they are binarised
  at half their maximum.

In both, a seeded `val_fraction` of the good training images is held out to choose the decision
threshold on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from domains.common.errors import DataError
from domains.common.images import PATH
from domains.common.items import ID, LABEL, SPLIT, stratified_split

GOOD = "good"
MASK_PATH, MASKS_EXPECTED = "mask_path", "masks_expected"
MT_GOOD_CLASS = "MT_Free"
LISTING_COLUMNS = [ID, SPLIT, LABEL, PATH, MASK_PATH, MASKS_EXPECTED]


def _files(folder: Path) -> list[Path]:
    """Regular, non-hidden files directly in `folder`, by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: {'not a folder' if path.exists() else 'folder not found'} ({what})")
    return path


def read_mvtec(root: Path, val_fraction: float, seed: int) -> pd.DataFrame:
    """The listing of one MVTec AD category folder."""
    root = _folder(Path(root), "an MVTec AD category: train/good, test/<type>, optional ground_truth/<type>")
    train_dir = _folder(root / "train", "MVTec layout: train/good/*.png")
    good_dir = _folder(train_dir / GOOD, "MVTec layout: train/good/*.png")
    test_dir = _folder(root / "test", "MVTec layout: test/<type>/*.png")
    truth_dir = root / "ground_truth"
    has_truth = truth_dir.is_dir()
    rows = []
    for split_dir, split in ((train_dir, "train"), (test_dir, "test")):
        for label_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for file in _files(label_dir):
                mask = truth_dir / label_dir.name / f"{file.stem}_mask.png"  # ground truth is for test images
                rows.append({ID: f"{split}/{label_dir.name}/{file.name}", SPLIT: split, LABEL: label_dir.name,
                             PATH: file.relative_to(root).as_posix(),
                             MASK_PATH: mask.relative_to(root).as_posix() if split == "test" and mask.is_file() else "",
                             MASKS_EXPECTED: has_truth})
    listing = pd.DataFrame(rows, columns=LISTING_COLUMNS)
    train_good = (listing[SPLIT] == "train") & (listing[LABEL] == GOOD)
    if not train_good.any():
        raise DataError(f"{good_dir}: no training images (train/good is empty)")
    if not (listing[SPLIT] == "test").any():
        raise DataError(f"{test_dir}: no test images (expected test/good and test/<defect type> folders)")
    return _hold_out_val(listing, val_fraction, seed)


def read_magnetic_tile(root: Path, val_fraction: float, test_good_fraction: float, seed: int) -> pd.DataFrame:
    """The listing of the Magnetic-Tile-Defect release, split as documented above."""
    root = _folder(Path(root), "Magnetic-Tile-Defect: MT_<class>/Imgs/<stem>.jpg + <stem>.png")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("MT_"))
    if not any(c.name == MT_GOOD_CLASS for c in classes):
        found = ", ".join(c.name for c in classes) or "no MT_<class> folders"
        raise DataError(f"{root}: no {MT_GOOD_CLASS} folder (the defect-free images); found {found}")
    rows = []
    for class_dir in classes:
        files = _files(_folder(class_dir / "Imgs", "Magnetic-Tile layout: MT_<class>/Imgs/"))
        stems_with_images = {f.stem for f in files if f.suffix.lower() != ".png"}
        masks = {f.stem: f for f in files if f.suffix.lower() == ".png" and f.stem in stems_with_images}
        good = class_dir.name == MT_GOOD_CLASS
        for file in (f for f in files if f not in masks.values()):
            mask = masks.get(file.stem)
            rows.append({ID: file.relative_to(root).as_posix(), SPLIT: "train" if good else "test",
                         LABEL: GOOD if good else class_dir.name.removeprefix("MT_").lower(),
                         PATH: file.relative_to(root).as_posix(),
                         MASK_PATH: mask.relative_to(root).as_posix() if mask else "", MASKS_EXPECTED: True})
    listing = pd.DataFrame(rows, columns=LISTING_COLUMNS)
    good_rows = np.flatnonzero(listing[LABEL] == GOOD)
    if len(good_rows) == 0:
        raise DataError(f"{root / MT_GOOD_CLASS / 'Imgs'}: no images")
    tested = stratified_split(np.zeros(len(good_rows)), test_good_fraction, seed)
    listing.loc[good_rows[tested], SPLIT] = "test"
    return _hold_out_val(listing, val_fraction, seed + 1)


def _hold_out_val(listing: pd.DataFrame, val_fraction: float, seed: int) -> pd.DataFrame:
    """Move a seeded share of the good training images to the `val` split."""
    rows = np.flatnonzero((listing[SPLIT] == "train") & (listing[LABEL] == GOOD))
    listing.loc[rows[stratified_split(np.zeros(len(rows)), val_fraction, seed)], SPLIT] = "val"
    return listing
