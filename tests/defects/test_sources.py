"""The real-format sources through every stage in-process: Magnetic-Tile's layout and quirks, MVTec
without ground truth (image level only), and the optional PatchCore model from a local weights file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from aiflow.cli import main
from domains.common.vision import resnet18
from tests.conftest import digest, write_params
from tests.defects.conftest import small_defects_params, with_draem, write_small_magnetic_tile, write_small_mvtec

STAGES = ("acquire", "validate", "prepare", "train", "evaluate")


def _run_all(root: Path, section: dict, capsys) -> dict:
    write_params(root, "defects", section)
    for stage in STAGES:
        assert main(["stage", stage, "defects"]) == 0, capsys.readouterr().err
    data = root / "data" / "defects"
    return {
        "metrics": json.loads((data / "evaluate/metrics.json").read_text()),
        "notes": json.loads((data / "evaluate/notes.json").read_text()),
        "gate": json.loads((data / "validate/gate.json").read_text()),
        "info": json.loads((data / "prepare/info.json").read_text()),
    }


def test_magnetic_tile_runs_with_varying_sizes_and_soft_masks(defects_root, capsys):
    data = write_small_magnetic_tile(defects_root / "mt", free=30, per_type=3)
    before = digest(data)
    section = {
        **small_defects_params(),
        "data": {"source": "magnetic-tile", "path": str(data), "test_good_fraction": 0.3},
    }
    out = _run_all(defects_root, section, capsys)
    assert out["gate"]["verdict"] == "pass"  # sizes may vary and masks be anti-aliased here, unlike MVTec
    assert out["info"]["images"] == {"train": 22, "val": 2, "test": 12}  # published split: 24 of 30 listed
    assert {"pixel_auroc", "auroc_crack", "auroc_blowhole"} <= set(out["metrics"]["segmenter"])
    assert any("Magnetic-Tile split: DifferNet's published one" in note for note in out["notes"])
    # crops past 3:2 either way are squeezed most by the square resize: counted in a note, a slice of their own
    evaluated = defects_root / "data" / "defects"
    test = pd.read_parquet(evaluated / "prepare/items.parquet").query("split == 'test'")
    aspect = test["width"] / test["height"]
    squeezed = int(((aspect > 1.5) | (aspect < 1 / 1.5)).sum())
    assert 0 < squeezed < len(test)
    assert any(
        note.startswith(f"{squeezed} of the {len(test)} test images are wider or taller") for note in out["notes"]
    )
    slices = pd.read_csv(evaluated / "evaluate/tables/slices.csv").query("slice == 'aspect'")
    assert slices["rows"].sum() == len(test) and len(slices) >= 2
    assert digest(data) == before


def test_mvtec_without_ground_truth_is_evaluated_at_image_level(defects_root, capsys):
    data = write_small_mvtec(defects_root / "category")
    shutil.rmtree(data / "ground_truth")
    section = {**small_defects_params(), "data": {"source": "mvtec", "path": str(data)}}
    out = _run_all(defects_root, section, capsys)
    assert out["gate"]["verdict"] == "pass" and not out["info"]["pixel_metrics"]
    assert "pixel_auroc" not in out["metrics"]["segmenter"] and "image_auroc" in out["metrics"]["segmenter"]
    assert any("image-level only" in note for note in out["notes"])


def test_patchcore_joins_when_a_weights_file_is_named(defects_root, capsys):
    torch.manual_seed(0)
    weights = defects_root / "resnet18-random.pth"
    torch.save({k: v for k, v in resnet18().state_dict().items() if k not in ("mean", "std")}, weights)
    section = small_defects_params()
    section["synthetic"].update(image_size=64)
    section["prepare"].update(image_size=64)
    section["train"].update(backbone_weights=str(weights), memory_bank=200)
    out = _run_all(defects_root, section, capsys)
    assert set(out["metrics"]) == {"patch_gaussian", "segmenter", "patchcore"}
    assert 0 <= out["metrics"]["patchcore"]["image_auroc"] <= 1
    # a truncated file, or another architecture: one line, and no model at all (the file is read first)
    capsys.readouterr()
    for bad, expected in (
        (weights.read_bytes()[:4096], "not a readable torch state dict, truncated"),
        (None, "not a torchvision ResNet state dict; backbone_weights takes resnet18 or wide_resnet50_2"),
    ):
        if bad is not None:
            weights.write_bytes(bad)
        else:
            torch.save({"conv1.weight": torch.zeros(1)}, weights)
        assert main(["stage", "train", "defects"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
        train_dir = defects_root / "data" / "defects" / "train"
        assert not train_dir.exists() or not any(train_dir.iterdir())  # no model, no threshold


def test_the_synthetic_surface_category_with_draem_runs_every_stage(defects_root, capsys):
    """The surface category end to end (the dvc build of test_pipeline_e2e.py runs the part category)."""
    out = _run_all(defects_root, with_draem(small_defects_params(), "surface"), capsys)
    assert out["gate"]["verdict"] == "pass" and set(out["metrics"]) == {"patch_gaussian", "segmenter", "draem"}
    assert {"image_auroc", "pixel_auroc", "auroc_scratch", "auroc_spot", "auroc_crack", "auroc_missing"} <= set(
        out["metrics"]["draem"]
    )
    assert any(note.startswith("DRAEM here: 32 px, widths 4 / 4") for note in out["notes"])


@pytest.mark.parametrize("per_category", [True, False])
def test_both_synthetic_categories_are_learned_and_evaluated_each(defects_root, capsys, per_category):
    """synthetic.category both: a surface and a part category folder; a model of each kind per category behind
    a route by look (the default), or one learning both; evaluation reports image and pixel AUROC per category
    (metrics, table, slice, an overlay figure each)."""
    section = small_defects_params()
    section["synthetic"].update(category="both", n_train=24)
    section["train"].update(per_category=per_category)
    out = _run_all(defects_root, section, capsys)
    assert out["gate"]["verdict"] == "pass" and out["info"]["images"] == {"train": 40, "val": 8, "test": 36}
    for model in ("patch_gaussian", "segmenter"):
        keys = {f"{level}_auroc_{c}" for level in ("image", "pixel") for c in ("surface", "part")}
        assert keys <= set(out["metrics"][model]) and all(0 <= out["metrics"][model][k] <= 1 for k in keys)
    data = defects_root / "data" / "defects"
    evaluate = data / "evaluate"
    table = pd.read_csv(evaluate / "tables/per_category_auroc.csv")
    assert table["category"].tolist() == ["surface", "part"] and table["good"].tolist() == [6, 6]
    assert table["segmenter image AUROC"].tolist() == [
        out["metrics"]["segmenter"]["image_auroc_surface"],
        out["metrics"]["segmenter"]["image_auroc_part"],
    ]
    predictions = pd.read_parquet(evaluate / "predictions.parquet")
    assert set(predictions["slice:category"]) == {"surface", "part"}
    assert predictions["row"].str.match(r"(surface|part)/test/").all()
    titles = {f["title"] for f in json.loads((evaluate / "figures/figures.json").read_text())}
    assert {"Anomaly maps of segmenter, category surface", "Anomaly maps of segmenter, category part"} <= titles
    trained = {f.name for f in (data / "train").iterdir()}
    history = json.loads((data / "train/history.json").read_text())
    if per_category:
        assert {"segmenter.surface.pt", "segmenter.part.pt", "patch_gaussian.part.joblib", "routing.json"} <= trained
        assert "segmenter.pt" not in trained and set(history) == {"segmenter (surface)", "segmenter (part)"}
        assert all(out["metrics"][m]["routed_correctly"] == 1.0 for m in out["metrics"])  # two unlike categories
        assert any(
            note.startswith("Categories: surface, part. Each model kind is trained once") for note in out["notes"]
        )
        # Each category's scores divided by its own held-out threshold: one threshold near 1 for both.
        thresholds = json.loads((data / "train/thresholds.json").read_text())
        assert all(0.8 < t < 1.25 for t in thresholds.values()), thresholds
        assert {"segmenter (surface) training curve", "segmenter (part) training curve"} <= titles
    else:
        assert {"segmenter.pt", "patch_gaussian.joblib"} <= trained and "routing.json" not in trained
        assert set(history) == {"segmenter"} and "routed_correctly" not in out["metrics"]["segmenter"]
        assert any(note.startswith("Categories: surface, part. One model of each kind") for note in out["notes"])
