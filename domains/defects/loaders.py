"""List the images of MVTec AD category folders or of the Magnetic-Tile-Defect release.

A listing has one row per image: item_id, split (train / val / test), label ("good" or the
defect type), category (MVTec's category folder; the source's name for Magnetic-Tile), path and
mask_path (relative to the source folder; "" when there is no mask) and masks_expected (whether
the source publishes pixel masks for its defect images). Images and masks
are only listed here; their facts are read by `masks.listing_facts`, so a file that does not
decode becomes a failed gate check naming it, not an error here. Only an unreadable layout
(missing folders, no training images) raises DataError, in one line.

- mvtec: a category folder: `train/good/*.png`, `test/<type>/*.png` (`good` among the types) and,
  optionally, `ground_truth/<type>/<stem>_mask.png`; or the dataset's folder and a list of its
  categories (`read_mvtec_categories`: ids and paths then start with the category's name). Without
  `ground_truth` there are no masks: evaluation is image-level only. Every file in the image folders is listed (a stray non-image fails the
  gate), except hidden ones (".DS_Store" and the like).
- magnetic-tile: `MT_<class>/Imgs/<stem>.jpg` with `<stem>.png` masks; `MT_Free` holds the
  defect-free images. Split `published` (default): DifferNet's (Rudolph et al. 2021), which
  CS-Flow and MSFlow report on: the MT_Free file names in `differnet_train_filenames.txt` (761)
  are trained on, the other MT_Free images (191) and every defect image are tested. A list that
  names a file not in MT_Free/Imgs, or a defect image, stops here in one line. Split `seeded`:
  every defect image and a seeded `test_good_fraction` of MT_Free are tested.
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
MASK_PATH, MASKS_EXPECTED, CATEGORY = "mask_path", "masks_expected", "category"
MT_GOOD_CLASS = "MT_Free"
PUBLISHED_TRAIN_LIST = "differnet_train_filenames.txt"  # DifferNet's mtd_train_filenames.txt, unchanged
LISTING_COLUMNS = [ID, SPLIT, LABEL, CATEGORY, PATH, MASK_PATH, MASKS_EXPECTED]
MAGNETIC_TILE = "magnetic-tile"  # its category: one kind of part


def _files(folder: Path) -> list[Path]:
    """Regular, non-hidden files directly in `folder`, by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: {'not a folder' if path.exists() else 'folder not found'} ({what})")
    return path


def read_mvtec(root: Path, val_fraction: float, seed: int, category: str | None = None) -> pd.DataFrame:
    """The listing of one MVTec AD category folder (`category`: its name in the listing; default the folder's)."""
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
                rows.append(
                    {
                        ID: f"{split}/{label_dir.name}/{file.name}",
                        SPLIT: split,
                        LABEL: label_dir.name,
                        CATEGORY: category or root.name,
                        PATH: file.relative_to(root).as_posix(),
                        MASK_PATH: mask.relative_to(root).as_posix() if split == "test" and mask.is_file() else "",
                        MASKS_EXPECTED: has_truth,
                    }
                )
    listing = pd.DataFrame(rows, columns=LISTING_COLUMNS)
    train_good = (listing[SPLIT] == "train") & (listing[LABEL] == GOOD)
    if not train_good.any():
        raise DataError(f"{good_dir}: no training images (train/good is empty)")
    if not (listing[SPLIT] == "test").any():
        raise DataError(f"{test_dir}: no test images (expected test/good and test/<defect type> folders)")
    return _hold_out_val(listing, val_fraction, seed)


def read_mvtec_categories(root: Path, categories: list[str], val_fraction: float, seed: int) -> pd.DataFrame:
    """The listings of several category folders of an MVTec AD dataset folder, one after the other: ids and paths
    start with the category's folder name (a folder of each category's own split held out alike)."""
    root = _folder(Path(root), "an MVTec AD dataset: one folder per category")
    parts = []
    for name in categories:
        part = read_mvtec(root / name, val_fraction, seed, name)
        masks = part[MASK_PATH]  # "" (no mask) stays ""
        prefixed = {
            ID: name + "/" + part[ID],
            PATH: name + "/" + part[PATH],
            MASK_PATH: masks.where(masks == "", name + "/" + masks),
        }
        parts.append(part.assign(**prefixed))
    return pd.concat(parts, ignore_index=True)


def read_magnetic_tile(
    root: Path,
    val_fraction: float,
    test_good_fraction: float,
    seed: int,
    split: str = "published",
    train_list: Path | None = None,
) -> pd.DataFrame:
    """The listing of the Magnetic-Tile-Defect release, split as documented above (`train_list`: the
    published split's file of training names; default `<root>/differnet_train_filenames.txt`)."""
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
            rows.append(
                {
                    ID: file.relative_to(root).as_posix(),
                    SPLIT: "train" if good else "test",
                    LABEL: GOOD if good else class_dir.name.removeprefix("MT_").lower(),
                    CATEGORY: MAGNETIC_TILE,
                    PATH: file.relative_to(root).as_posix(),
                    MASK_PATH: mask.relative_to(root).as_posix() if mask else "",
                    MASKS_EXPECTED: True,
                }
            )
    listing = pd.DataFrame(rows, columns=LISTING_COLUMNS)
    good_rows = np.flatnonzero(listing[LABEL] == GOOD)
    if len(good_rows) == 0:
        raise DataError(f"{root / MT_GOOD_CLASS / 'Imgs'}: no images")
    if split == "published":
        names = read_train_list(root, Path(train_list) if train_list else root / PUBLISHED_TRAIN_LIST, listing)
        tested = ~listing.loc[good_rows, PATH].map(lambda rel: Path(rel).name in names).to_numpy()
    else:
        tested = stratified_split(np.zeros(len(good_rows)), test_good_fraction, seed)
    listing.loc[good_rows[tested], SPLIT] = "test"
    return _hold_out_val(listing, val_fraction, seed + 1)


def read_train_list(root: Path, file: Path, listing: pd.DataFrame) -> set[str]:
    """The MT_Free file names a published-split list trains on: one a line, a bare name or a path from
    the release's root. A defect image (in an MT_<defect> folder), or a name that is no MT_Free image,
    is refused: training on a defect, or on other images than the protocol's, makes the figures
    incomparable with the published ones."""
    if not file.is_file():
        raise DataError(
            f"{file}: not found (the published split's MT_Free training names); name the list in "
            "defects.data.train_list, or set defects.data.split: seeded"
        )
    try:
        entries = [Path(line.strip()) for line in file.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise DataError(f"{file}: not a text file of image names (defects.data.train_list)") from None
    if not entries:
        raise DataError(f"{file}: no file names in the training list (defects.data.train_list)")
    names = listing[PATH].map(lambda rel: Path(rel).name)
    free = set(names[listing[LABEL] == GOOD])
    defect_names = set(names[listing[LABEL] != GOOD])
    defects = sorted(
        e.as_posix()
        for e in entries
        if (
            e.parts[0] != MT_GOOD_CLASS
            and e.parts[0].startswith("MT_")
            or e.name not in free
            and e.name in defect_names
        )
    )
    if defects:
        raise DataError(
            f"{file}: the training list names {len(defects)} defect image(s), e.g. {defects[0]} "
            "(training images must be defect-free)"
        )
    missing = sorted({e.name for e in entries} - free)
    if missing:
        raise DataError(
            f"{file}: the training list names {len(missing)} file(s) not in {MT_GOOD_CLASS}/Imgs, e.g. {missing[0]}"
        )
    return {e.name for e in entries}


def _hold_out_val(listing: pd.DataFrame, val_fraction: float, seed: int) -> pd.DataFrame:
    """Move a seeded share of the good training images to the `val` split."""
    rows = np.flatnonzero((listing[SPLIT] == "train") & (listing[LABEL] == GOOD))
    listing.loc[rows[stratified_split(np.zeros(len(rows)), val_fraction, seed)], SPLIT] = "val"
    return listing
