"""Loaders: MedMNIST .npz (any resolution, grey or RGB, 2+ classes) and image folders into per-image facts."""

import re

import numpy as np
import pytest

from domains.common.errors import DataError
from domains.medical.loaders import read_image_folder, read_medmnist
from tests.conftest import ROOT
from tests.medical.conftest import synthetic_arrays, write_image_folder, write_npz

CLASSES = ["normal", "pneumonia"]
PNEUMONIAMNIST = ROOT.parent / "shared" / "datasets" / "medical-imaging" / "medmnist" / "pneumoniamnist.npz"


def test_medmnist_rows_name_the_images_and_their_classes(tmp_path):
    arrays = synthetic_arrays()
    table = read_medmnist(write_npz(tmp_path / "p.npz", arrays), CLASSES)
    assert len(table) == 110 and table["split"].value_counts().to_dict() == {"train": 60, "test": 30, "val": 20}
    first = table.iloc[0]
    assert (first["item_id"], first["member"], first["shape"], first["path"]) == (
        "train/0",
        "train_images/0",
        "16x16x1",
        "p.npz",
    )
    assert first["label"] == CLASSES[arrays["train_labels"][0, 0]]


def test_medmnist_rgb_any_resolution_and_many_classes(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 255, (12, 64, 64, 3), dtype=np.uint8) for s in ("train", "val", "test")}
    arrays |= {f"{s}_labels": (np.arange(12) % 4)[:, None] for s in ("train", "val", "test")}
    table = read_medmnist(write_npz(tmp_path / "blood.npz", arrays), ["a", "b", "c", "d"])
    assert set(table["shape"]) == {"64x64x3"} and set(table["label"]) == {"a", "b", "c", "d"}


def test_a_label_outside_the_classes_keeps_its_number_for_the_gate(tmp_path):
    arrays = synthetic_arrays()
    arrays["test_labels"][3] = 7
    table = read_medmnist(write_npz(tmp_path / "p.npz", arrays), CLASSES)
    assert table.set_index("item_id").loc["test/3", "label"] == "7"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a.pop("test_labels"), "missing array(s) test_labels"),
        (lambda a: a.update(val_labels=a["val_labels"][:-2]), "val_images holds 20 images but val_labels 18 labels"),
        (
            lambda a: a.update(train_images=a["train_images"][:, :, 0]),
            "train_images has shape (60, 16); expected (N, H, W)",
        ),
        (lambda a: a.update(train_labels=np.zeros((60, 14))), "multi-label data (e.g. ChestMNIST) is not supported"),
    ],
)
def test_broken_npz_is_one_line(tmp_path, mutate, message):
    arrays = synthetic_arrays()
    mutate(arrays)
    with pytest.raises(DataError, match=re.escape(message)):
        read_medmnist(write_npz(tmp_path / "p.npz", arrays), CLASSES)


def test_a_file_that_is_not_an_npz(tmp_path):
    (tmp_path / "p.npz").write_text("train_images,train_labels\n1,2\n")
    with pytest.raises(DataError, match="not an .npz archive"):
        read_medmnist(tmp_path / "p.npz", CLASSES)


def test_image_folder_carves_a_stratified_val_from_train(tmp_path):
    root = write_image_folder(tmp_path / "xray", synthetic_arrays())
    table = read_image_folder(root, val_fraction=0.2, seed=0)
    assert table["split"].value_counts().to_dict() == {"train": 48, "test": 30, "val": 12}
    assert set(table["label"]) == set(CLASSES) and (table["decode_error"] == "").all()
    assert table.loc[0, "path"].startswith("train/normal/")
    again = read_image_folder(root, val_fraction=0.2, seed=0)
    assert again["split"].tolist() == table["split"].tolist()


def test_image_folder_with_its_own_val(tmp_path):
    root = write_image_folder(tmp_path / "xray", synthetic_arrays(), splits=("train", "val", "test"))
    assert read_image_folder(root, 0.2, 0)["split"].value_counts()["val"] == 20


@pytest.mark.parametrize(
    "layout, message",
    [
        ("no-test", "missing split folder(s) test"),
        ("empty-class", "empty class folder"),
        ("no-classes", "no class folders"),
    ],
)
def test_broken_image_folders_are_one_line(tmp_path, layout, message):
    root = write_image_folder(tmp_path / "xray", synthetic_arrays())
    if layout == "no-test":
        for f in sorted((root / "test").rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        (root / "test").rmdir()
    elif layout == "empty-class":
        (root / "train" / "covid").mkdir()
    else:
        (root / "empty-split").mkdir()
        (root / "val").mkdir()
    with pytest.raises(DataError, match=re.escape(message)):
        read_image_folder(root, 0.1, 0)


@pytest.mark.skipif(not PNEUMONIAMNIST.is_file(), reason="PneumoniaMNIST not in ../shared/datasets")
def test_the_real_pneumoniamnist_file():
    table = read_medmnist(PNEUMONIAMNIST, CLASSES)
    assert table["split"].value_counts().to_dict() == {"train": 4708, "test": 624, "val": 524}
    assert set(table["shape"]) == {"28x28x1"} and set(table["label"]) == set(CLASSES)
