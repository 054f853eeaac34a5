"""Every bad medical input, fed through the real-data paths in-process, stops before training with a
one-line reason per failed check, no traceback, the input untouched and no model (or, where params
say so, the bad images are quarantined and the run goes on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import assert_stopped, digest, run_to_gate
from tests.medical.conftest import small_medical_params, synthetic_arrays, write_image_folder, write_npz


def _run(root: Path, source: str, data: Path, capsys, **gate) -> tuple[int, str]:
    return run_to_gate(root, "medical", small_medical_params(), source, data, capsys, **gate)


def _npz_case(mutate):
    def make(tmp: Path) -> tuple[str, Path]:
        arrays = synthetic_arrays()
        mutate(arrays)
        return "medmnist", write_npz(tmp / "pneumoniamnist.npz", arrays)

    return make


def _set(key: str, index, value):
    def mutate(arrays):
        arrays[key] = arrays[key].copy()
        arrays[key][index] = value

    return mutate


def _nan_images(arrays):
    arrays["train_images"] = arrays["train_images"].astype(np.float32) / 255
    arrays["train_images"][4, 3, 3] = np.nan
    for split in ("val", "test"):
        arrays[f"{split}_images"] = arrays[f"{split}_images"].astype(np.float32) / 255


def _test_copies_train(arrays):
    arrays["test_images"] = arrays["test_images"].copy()
    arrays["test_images"][:2] = arrays["train_images"][:2]


def _not_npz(tmp: Path) -> tuple[str, Path]:
    (tmp / "pneumoniamnist.npz").write_bytes(b"\x89PNG\r\n\x1a\n not an archive")
    return "medmnist", tmp / "pneumoniamnist.npz"


def _truncated_png(tmp: Path) -> tuple[str, Path]:
    root = write_image_folder(tmp / "xray", synthetic_arrays())
    png = sorted((root / "train" / "pneumonia").glob("*.png"))[0]
    png.write_bytes(png.read_bytes()[:60])
    return "image-folder", root


def _empty_class_folder(tmp: Path) -> tuple[str, Path]:
    root = write_image_folder(tmp / "xray", synthetic_arrays())
    (root / "test" / "covid").mkdir()
    return "image-folder", root


BAD_INPUTS = {
    "npz without test_labels": (_npz_case(lambda a: a.pop("test_labels")), "missing array(s) test_labels"),
    "images and labels of different lengths": (
        _npz_case(lambda a: a.update(train_labels=a["train_labels"][:50])),
        "train_images holds 60 images but train_labels 50 labels",
    ),
    "a label outside the class set": (
        _npz_case(_set("train_labels", 5, 2)),
        "label:in_classes [pandera]: 1 of 110 rows",
    ),
    "float images with NaN": (_npz_case(_nan_images), "nan_pixels:none [pandera]: 1 of 110 rows fail"),
    "images of the wrong rank": (
        _npz_case(lambda a: a.update(val_images=a["val_images"].reshape(20, -1))),
        "val_images has shape (20, 256); expected (N, H, W) or (N, H, W, 3)",
    ),
    "a file that is not an npz": (_not_npz, "not an .npz archive"),
    "the same images in train and test, blocked by params": (
        _npz_case(_test_copies_train),
        "split_leakage [pandera]: 2 of 110 rows fail",
    ),
    "a truncated PNG": (_truncated_png, "decode_error:decodes [pandera]: 1 of 90 rows fail"),
    "an empty class folder": (_empty_class_folder, "test/covid: empty class folder"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_stops_before_training(case, medical_root, tmp_path, capsys):
    make, expected = BAD_INPUTS[case]
    source, data = make(tmp_path)
    before = digest(data)
    severity = {"split_leakage": "block"} if "blocked by params" in case else {}  # leaks are quarantined by default
    code, err = _run(medical_root, source, data, capsys, severity=severity)
    assert_stopped(medical_root, "medical", data, before, code, err, expected)


def test_the_failing_file_is_named(medical_root, tmp_path, capsys):
    source, data = _truncated_png(tmp_path)
    _, err = _run(medical_root, source, data, capsys)
    assert "e.g. train/pneumonia/0.png (image file is truncated)" in err


def test_constant_images_are_quarantined_and_the_run_goes_on(medical_root, tmp_path, capsys):
    arrays = synthetic_arrays()
    arrays["train_images"][[3, 7]] = 0  # all black
    data = write_npz(tmp_path / "p.npz", arrays)
    code, err = _run(medical_root, "medmnist", data, capsys, max_quarantine_fraction=0.05)
    assert code == 0, err
    validate_dir = medical_root / "data" / "medical" / "validate"
    quarantined = pd.read_parquet(validate_dir / "quarantine.parquet")
    assert quarantined["item_id"].tolist() == ["train/3", "train/7"]
    assert set(quarantined["quarantine_reason"]) == {"pixel_std:not_constant; saturated_fraction:not_saturated"}
    assert len(pd.read_parquet(validate_dir / "validated.parquet")) == 108


def test_constant_images_block_when_params_say_so(medical_root, tmp_path, capsys):
    arrays = synthetic_arrays()
    arrays["test_images"][0] = 0
    data = write_npz(tmp_path / "p.npz", arrays)
    before = digest(data)
    code, err = _run(medical_root, "medmnist", data, capsys, severity={"pixel_std:not_constant": "block"})
    assert_stopped(
        medical_root, "medical", data, before, code, err, "pixel_std:not_constant [pandera]: 1 of 110 rows fail"
    )


def test_leaked_test_images_are_quarantined(medical_root, tmp_path, capsys):
    arrays = synthetic_arrays()
    _test_copies_train(arrays)
    data = write_npz(tmp_path / "p.npz", arrays)
    code, err = _run(medical_root, "medmnist", data, capsys, max_quarantine_fraction=0.05)
    assert code == 0, err
    quarantined = pd.read_parquet(medical_root / "data" / "medical" / "validate" / "quarantine.parquet")
    assert quarantined["item_id"].tolist() == ["test/0", "test/1"]  # the training copies stay
