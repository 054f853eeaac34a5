"""The MVTec and Magnetic-Tile listings: splits, labels, masks, the seeded hold-outs, unreadable layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from domains.common.errors import DataError
from domains.defects.loaders import read_magnetic_tile, read_mvtec, read_mvtec_categories
from domains.defects.masks import defect_pixels, listing_facts, mask_facts
from tests.defects.conftest import write_small_magnetic_tile, write_small_mvtec


def test_mvtec_listing_has_splits_labels_and_masks(tmp_path):
    root = write_small_mvtec(tmp_path / "cat")
    listing = read_mvtec(root, val_fraction=0.2, seed=3)
    assert len(listing) == 20 + 4 + 2 * 2
    assert listing["split"].value_counts().to_dict() == {"train": 16, "test": 8, "val": 4}
    assert set(listing.loc[listing["split"] != "test", "label"]) == {"good"}
    defective = listing[listing["label"] != "good"]
    assert set(defective["label"]) == {"crack", "missing"}
    assert defective["mask_path"].str.match(r"ground_truth/(crack|missing)/\d{3}_mask\.png").all()
    assert (listing.loc[listing["label"] == "good", "mask_path"] == "").all()
    assert listing["masks_expected"].all() and listing["item_id"].is_unique
    assert listing.equals(read_mvtec(root, val_fraction=0.2, seed=3))  # seeded
    assert not listing["split"].equals(read_mvtec(root, val_fraction=0.2, seed=4)["split"])


def test_mvtec_categories_are_listed_one_after_the_other_under_their_names(tmp_path):
    write_small_mvtec(tmp_path / "mvtec" / "tile")
    write_small_mvtec(tmp_path / "mvtec" / "nut", seed=2, category="part")
    write_small_mvtec(tmp_path / "mvtec" / "unused", seed=3)
    listing = read_mvtec_categories(tmp_path / "mvtec", ["tile", "nut"], val_fraction=0.2, seed=3)
    assert listing["category"].value_counts().to_dict() == {"tile": 28, "nut": 28}
    for name in ("tile", "nut"):
        part = listing[listing["category"] == name]
        alone = read_mvtec(tmp_path / "mvtec" / name, val_fraction=0.2, seed=3)
        assert (part["item_id"].to_numpy() == (name + "/" + alone["item_id"]).to_numpy()).all()
        assert (part["split"].to_numpy() == alone["split"].to_numpy()).all()  # each category held out alike
        masks = part.loc[part["label"] != "good", "mask_path"]
        assert masks.str.match(rf"{name}/ground_truth/(crack|missing)/\d{{3}}_mask\.png").all()
        assert (part.loc[part["label"] == "good", "mask_path"] == "").all()
    assert all((tmp_path / "mvtec" / rel).is_file() for rel in listing["path"])
    assert read_mvtec(tmp_path / "mvtec" / "tile", 0.2, 3)["category"].eq("tile").all()  # one folder: its name
    with pytest.raises(DataError, match="mvtec/bolt: folder not found"):
        read_mvtec_categories(tmp_path / "mvtec", ["tile", "bolt"], val_fraction=0.2, seed=3)


def test_mvtec_without_ground_truth_expects_no_masks(tmp_path):
    root = write_small_mvtec(tmp_path / "cat")
    shutil.rmtree(root / "ground_truth")
    listing = read_mvtec(root, val_fraction=0.2, seed=3)
    assert (listing["mask_path"] == "").all() and not listing["masks_expected"].any()


def test_mvtec_lists_stray_files_but_not_hidden_ones(tmp_path):
    root = write_small_mvtec(tmp_path / "cat")
    (root / "train" / "good" / "notes.txt").write_text("not an image")
    (root / "train" / "good" / ".DS_Store").write_bytes(b"\x00\x01")
    listing = read_mvtec(root, val_fraction=0.2, seed=3)
    assert "train/good/notes.txt" in set(listing["item_id"]) and not listing["item_id"].str.contains("DS_Store").any()
    facts = listing_facts(root, listing).set_index("item_id")
    assert facts.at["train/good/notes.txt", "decode_error"].endswith("not an image (no known image format)")


@pytest.mark.parametrize(
    "layout, expected",
    [
        (lambda r: shutil.rmtree(r / "train"), "train: folder not found"),
        (lambda r: shutil.rmtree(r / "test"), "test: folder not found"),
        (
            lambda r: [p.unlink() for p in (r / "train" / "good").iterdir()],
            r"no training images \(train/good is empty\)",
        ),
        (lambda r: [shutil.rmtree(p) for p in (r / "test").iterdir()], "no test images"),
    ],
)
def test_unreadable_mvtec_layouts_raise_one_line(tmp_path, layout, expected):
    root = write_small_mvtec(tmp_path / "cat")
    layout(root)
    with pytest.raises(DataError, match=expected) as err:
        read_mvtec(root, val_fraction=0.2, seed=3)
    assert "\n" not in str(err.value)


def test_magnetic_tile_published_split_trains_on_the_listed_names(tmp_path):
    root = write_small_magnetic_tile(tmp_path / "mt", free=40, per_type=3, train_share=0.75)
    listing = read_magnetic_tile(root, val_fraction=0.1, test_good_fraction=0.5, seed=7)  # the fraction is unused
    named = set((root / "differnet_train_filenames.txt").read_text().split())
    good = listing[listing["label"] == "good"]
    assert good["split"].value_counts().to_dict() == {"train": 27, "test": 10, "val": 3}
    in_list = good["path"].map(lambda rel: Path(rel).name in named)
    assert in_list.eq(good["split"] != "test").all()  # listed: train or val; the rest of MT_Free: test
    assert (listing.loc[listing["label"] != "good", "split"] == "test").all()
    assert listing.equals(read_magnetic_tile(root, 0.1, 0.5, seed=7))
    other_list = tmp_path / "mine.txt"
    other_list.write_text("\n".join(f"MT_Free/Imgs/{n}" for n in sorted(named)[:20]))  # a folder prefix is ignored
    assert (read_magnetic_tile(root, 0.1, 0.5, 7, train_list=other_list)["split"] != "test").sum() == 20


@pytest.mark.parametrize(
    "names, expected",
    [
        (["exp0_num_1000.jpg", "exp2_num_9999.jpg"], "names 1 file.* not in MT_Free/Imgs, e.g. exp2_num_9999.jpg"),
        (["exp0_num_1000.jpg", "exp1_num_1001.png"], "names 1 file.* not in MT_Free/Imgs, e.g. exp1_num_1001.png"),
        (["exp0_num_1000.jpg", "MT_Crack/Imgs/exp0_num_1000.jpg"], "names 1 defect image.*MT_Crack/Imgs/exp0_num_1000"),
        (["exp1_num_1001.jpg", "exp0_num_1000.jpg"], None),
        ([], "no file names"),
    ],
)
def test_a_published_list_naming_what_is_not_there_stops_in_one_line(tmp_path, names, expected):
    root = write_small_magnetic_tile(tmp_path / "mt", free=10, per_type=2)
    (root / "differnet_train_filenames.txt").write_text("\n".join(names))
    if expected is None:
        assert (read_magnetic_tile(root, 0.1, 0.3, 1)["split"] != "test").sum() == 2
        return
    with pytest.raises(DataError, match=expected) as err:
        read_magnetic_tile(root, 0.1, 0.3, seed=1)
    assert "\n" not in str(err.value)


def test_a_published_list_naming_defect_images_stops(tmp_path):
    root = write_small_magnetic_tile(tmp_path / "mt", free=10, per_type=2)
    crack = sorted((root / "MT_Crack" / "Imgs").glob("*.jpg"))[0]
    (root / "MT_Crack" / "Imgs" / crack.name).rename(root / "MT_Crack" / "Imgs" / "crack_0.jpg")
    (root / "differnet_train_filenames.txt").write_text("exp1_num_1001.jpg\ncrack_0.jpg\n")
    with pytest.raises(DataError, match="names 1 defect image.*crack_0.jpg"):
        read_magnetic_tile(root, 0.1, 0.3, seed=1)
    (root / "differnet_train_filenames.txt").unlink()
    with pytest.raises(DataError, match="differnet_train_filenames.txt: not found .*defects.data.split: seeded"):
        read_magnetic_tile(root, 0.1, 0.3, seed=1)


def test_magnetic_tile_seeded_split_protocol(tmp_path):
    root = write_small_magnetic_tile(tmp_path / "mt", free=40, per_type=3)
    listing = read_magnetic_tile(root, val_fraction=0.1, test_good_fraction=0.25, seed=7, split="seeded")
    good = listing[listing["label"] == "good"]
    assert good["split"].value_counts().to_dict() == {"train": 27, "test": 10, "val": 3}
    assert (listing.loc[listing["label"] != "good", "split"] == "test").all()  # every defect image is tested
    assert set(listing["label"]) == {"good", "crack", "blowhole"}
    assert listing["path"].str.endswith(".jpg").all()
    assert (listing["mask_path"] == listing["path"].str.replace(".jpg", ".png")).all()
    assert listing.equals(read_magnetic_tile(root, 0.1, 0.25, seed=7, split="seeded"))
    other = read_magnetic_tile(root, 0.1, 0.25, seed=8, split="seeded")
    assert not other["split"].equals(listing["split"])


def test_magnetic_tile_needs_mt_free(tmp_path):
    root = write_small_magnetic_tile(tmp_path / "mt")
    shutil.rmtree(root / "MT_Free")
    with pytest.raises(DataError, match="no MT_Free folder .* found MT_Blowhole, MT_Crack"):
        read_magnetic_tile(root, 0.1, 0.3, seed=1)


def test_magnetic_tile_soft_masks_are_binarised_and_measured(tmp_path):
    root = write_small_magnetic_tile(tmp_path / "mt")
    listing = read_magnetic_tile(root, 0.1, 0.3, seed=1)
    facts = listing_facts(root, listing)
    crack = facts[facts["label"] == "crack"].iloc[0]
    assert crack["mask_defect_pixels"] == 60  # the 90-valued edge row is below half of 255
    assert 0 < crack["mask_soft_fraction"] < 0.2
    assert (facts.loc[facts["label"] == "good", "mask_defect_pixels"] == 0).all()
    assert facts["height"].nunique() > 1  # crops of varying size, as published


@pytest.mark.parametrize(
    "values, defects, soft",
    [
        ([0, 255], 1, 0.0),
        ([0, 1], 1, 0.0),
        ([0, 100, 255], 1, 0.5),
        ([0, 0], 0, 0.0),
    ],
)
def test_mask_values(values, defects, soft):
    mask = np.array(values, dtype=np.uint8).reshape(1, -1, 1)
    assert defect_pixels(mask).sum() == defects
    assert mask_facts(mask)["mask_soft_fraction"] == soft


def test_rgb_masks_use_any_channel():
    mask = np.zeros((2, 2, 3), dtype=np.uint8)
    mask[0, 0, 2] = 255
    assert defect_pixels(mask).tolist() == [[True, False], [False, False]]


def test_listing_facts_report_masks_that_do_not_decode(tmp_path):
    root = write_small_mvtec(tmp_path / "cat")
    bad = sorted((root / "ground_truth" / "crack").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:40])
    facts = listing_facts(root, read_mvtec(root, 0.2, 3))
    errors = facts.loc[facts["mask_error"] != "", "mask_error"].tolist()
    assert len(errors) == 1 and errors[0].startswith(Path(bad).relative_to(root).as_posix())
