"""Every bad MVTec input of the issue, fed through the real-data path in-process, stops before training
with a one-line reason per failed check naming the file, no traceback, the input untouched and no
model (or, where params say so, the bad images are quarantined and the run goes on)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aiflow.cli import main
from tests.conftest import assert_stopped, digest, run_to_gate, write_params
from tests.defects.conftest import small_defects_params, write_small_magnetic_tile, write_small_mvtec


def _run(root: Path, data: Path, capsys, **gate) -> tuple[int, str]:
    return run_to_gate(root, "defects", small_defects_params(), "mvtec", data, capsys, **gate)


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:200])


def _resize(file: Path, size: tuple[int, int]) -> None:
    Image.open(file).resize(size, Image.Resampling.NEAREST).save(file)  # a mask stays binary


def _soft_mask(root: Path) -> None:
    file = root / "ground_truth" / "crack" / "000_mask.png"
    mask = np.asarray(Image.open(file)).copy()
    mask[mask > 0] = 128  # a grey level inside the defect: values 0, 128 and 255
    mask[np.nonzero(mask)[0][0], np.nonzero(mask)[1][0]] = 255
    Image.fromarray(mask).save(file)


def _defect_in_training(root: Path) -> None:
    image = np.asarray(Image.open(root / "train/good/000.png")).copy()
    image[10:20, 10:20] = 5  # material missing
    (root / "train/missing").mkdir()
    Image.fromarray(image).save(root / "train/missing/000.png")


def _to_rgb(file: Path) -> None:
    Image.open(file).convert("RGB").save(file)


# case -> (mutation of the MVTec folder, the lines the gate must print)
GATE_CASES = {
    "a truncated PNG": (
        lambda r: _truncate(r / "train/good/003.png"),
        [
            "gate blocked defects: 1 check(s) failed",
            "decode_error:decodes [pandera]: 1 of 28 rows",
            "train/good/003.png (image file is truncated",
        ],
    ),
    "a mask of another size": (
        lambda r: _resize(r / "ground_truth/crack/000_mask.png", (40, 40)),
        ["1 check(s) failed", "mask_same_size [pandera]: 1 of 28 rows", "e.g. test/crack/000.png"],
    ),
    "a defect image without its mask": (
        lambda r: (r / "ground_truth/missing/001_mask.png").unlink(),
        ["1 check(s) failed", "mask_present [pandera]: 1 of 28 rows", "e.g. test/missing/001.png"],
    ),
    "a non-image file in train/good": (
        lambda r: (r / "train/good/readme.txt").write_text("part numbers 1-20"),
        ["1 check(s) failed", "decode_error:decodes [pandera]: 1 of 29 rows", "train/good/readme.txt (not an image"],
    ),
    "images of mixed sizes": (
        lambda r: _resize(r / "test/good/001.png", (40, 48)),
        ["1 check(s) failed", "shape:consistent [pandera]: 1 of 28 rows", "test/good/001.png (48x40x1)"],
    ),
    "a test image identical to a training image, blocked by params": (
        lambda r: shutil.copy(r / "train/good/007.png", r / "test/good/002.png"),
        ["1 check(s) failed", "split_leakage [pandera]: 1 of 28 rows", "e.g. test/good/002.png"],
    ),
    "a mask that is not binary": (
        _soft_mask,
        ["1 check(s) failed", "mask_soft_fraction:binary [pandera]: 1 of 28 rows", "test/crack/000.png"],
    ),
    "an RGB image among grey ones": (
        lambda r: _to_rgb(r / "train/good/010.png"),
        [
            "2 check(s) failed",
            "shape:consistent [pandera]: 1 of 28 rows",
            "mode:consistent [pandera]: 1 of 28 rows",
            "train/good/010.png (3xuint8)",
        ],
    ),
    "a defect image among the training images": (
        _defect_in_training,
        ["1 check(s) failed", "no_defect_in_training [pandera]: 1 of 29 rows", "e.g. train/missing/000.png"],
    ),
    "a good test image whose mask marks a defect": (
        lambda r: shutil.copytree(r / "ground_truth/crack", r / "ground_truth/good"),  # 000 and 001
        ["1 check(s) failed", "mask_empty_on_good [pandera]: 2 of 28 rows", "test/good/000.png"],
    ),
}


@pytest.mark.parametrize("case", list(GATE_CASES))
def test_bad_mvtec_input_stops_at_the_gate(case, defects_root, capsys):
    mutate, expected = GATE_CASES[case]
    data = write_small_mvtec(defects_root / "category")
    mutate(data)
    before = digest(data)
    severity = {"split_leakage": "block"} if "blocked by params" in case else {}  # leaks are quarantined by default
    code, err = _run(defects_root, data, capsys, severity=severity)
    assert_stopped(defects_root, "defects", data, before, code, err, *expected)


def test_an_empty_mask_on_a_defect_image_is_quarantined(defects_root, capsys):
    data = write_small_mvtec(defects_root / "category")
    file = data / "ground_truth/crack/001_mask.png"
    Image.fromarray(np.zeros((48, 48), dtype=np.uint8)).save(file)
    code, err = _run(defects_root, data, capsys, max_quarantine_fraction=0.05)
    assert code == 0, err
    validate = defects_root / "data/defects/validate"
    gate = pd.read_json(validate / "gate.json", typ="series")
    failed = [c for c in gate["checks"] if not c["passed"]]
    assert gate["verdict"] == "warn" and [(c["name"], c["severity"], c["examples"]) for c in failed] == [
        ("mask_not_empty", "quarantine", ["test/crack/001.png"])
    ]
    quarantined = pd.read_parquet(validate / "quarantine.parquet")
    assert quarantined["item_id"].tolist() == ["test/crack/001.png"]  # no ground truth to score it against


def test_too_few_good_training_images_stop_at_the_gate(defects_root, capsys):
    data = write_small_mvtec(defects_root / "category")
    before = digest(data)
    code, err = _run(defects_root, data, capsys, min_train_good=30)
    assert_stopped(
        defects_root,
        "defects",
        data,
        before,
        code,
        err,
        "enough_good_training_images [great_expectations]: observed 18, expected "
        "expect_column_min_to_be_between(min_value=30",
    )


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda r: [p.unlink() for p in (r / "train/good").iterdir()],
            "train/good: no training images (train/good is empty)",
        ),
        (lambda r: shutil.rmtree(r / "train"), "category/train: folder not found"),
        (lambda r: shutil.rmtree(r / "test"), "category/test: folder not found"),
    ],
)
def test_unreadable_layouts_stop_at_acquire(mutate, expected, defects_root, capsys):
    data = write_small_mvtec(defects_root / "category")
    mutate(data)
    before = digest(data)
    code, err = _run(defects_root, data, capsys)
    assert_stopped(defects_root, "defects", data, before, code, err, expected)
    assert len(err.strip().splitlines()) == 1
    assert not (defects_root / "data" / "defects" / "validate").exists()  # stopped before the gate


def test_a_truncated_image_can_be_quarantined_instead(defects_root, capsys):
    data = write_small_mvtec(defects_root / "category")
    _truncate(data / "train/good/003.png")
    before = digest(data)
    code, err = _run(
        defects_root, data, capsys, severity={"decode_error:decodes": "quarantine"}, max_quarantine_fraction=0.05
    )
    assert code == 0, err
    validate = defects_root / "data" / "defects" / "validate"
    quarantined = pd.read_parquet(validate / "quarantine.parquet")
    assert quarantined[["item_id", "quarantine_reason"]].values.tolist() == [
        ["train/good/003.png", "decode_error:decodes"]
    ]
    assert len(pd.read_parquet(validate / "validated.parquet")) == 27
    assert digest(data) == before


@pytest.mark.parametrize(
    "names, expected",
    [
        ("exp0_num_1000.jpg\nexp0_num_4242.jpg\n", "names 1 file(s) not in MT_Free/Imgs, e.g. exp0_num_4242.jpg"),
        (
            "exp0_num_1000.jpg\nMT_Crack/Imgs/exp1_num_1001.jpg\n",
            "names 1 defect image(s), e.g. MT_Crack/Imgs/exp1_num_1001",
        ),
    ],
)
def test_a_bad_published_training_list_stops_at_acquire(names, expected, defects_root, capsys):
    data = write_small_magnetic_tile(defects_root / "mt")
    (data / "differnet_train_filenames.txt").write_text(names)
    before = digest(data)
    code, err = run_to_gate(defects_root, "defects", small_defects_params(), "magnetic-tile", data, capsys)
    assert_stopped(defects_root, "defects", data, before, code, err, expected)
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"source": "magnetic-tile", "categories": ["tile"]}, "data.categories: for source mvtec only"),
        ({"source": "mvtec", "categories": ["tile", "tile"]}, "data.categories: a category is named twice"),
        ({"source": "mvtec", "categories": ["tile", "bolt"]}, "mvtec/bolt: folder not found"),
    ],
)
def test_bad_categories_stop_in_one_line(data, expected, defects_root, capsys):
    write_small_mvtec(defects_root / "mvtec" / "tile")
    section = small_defects_params()
    write_params(defects_root, "defects", {**section, "data": {**data, "path": str(defects_root / "mvtec")}})
    assert main(["stage", "acquire", "defects"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (defects_root / "data" / "defects" / "acquire" / "table.parquet").exists()
