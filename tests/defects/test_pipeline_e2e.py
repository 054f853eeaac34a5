"""End to end in a throwaway copy of the repository: `dvc repro report@defects` at a small size, on the
default's two synthetic categories (textured surfaces; parts at a random pose), a model of each kind per
category with every model trained from scratch (DRAEM at a tiny size); tests/test_export.py exports this
build. test_score.py scores a part-only build; the surface category runs end to end in-process
(test_sources.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from domains.common.paths import STAGES
from domains.defects.synthetic import BOTH
from tests.conftest import assert_noop_repro, assert_retrain_reproduces, built_repo, run, stages_ran, trained_copy
from tests.defects.conftest import small_defects_params, with_draem

pytestmark = pytest.mark.slow
MODEL_FILES = (("patch_gaussian", ".joblib"), ("segmenter", ".pt"), ("draem", ".pt"))
SECTION = with_draem(small_defects_params(), "both")  # the build tests/test_export.py exports, too


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return trained_copy(tmp_path_factory, "defects", SECTION)


def test_cold_repro_produces_every_output(repo, tmp_path_factory):
    _, proc = built_repo(tmp_path_factory, "defects", SECTION)  # the cold run this copy was made from
    assert stages_ran(proc.stdout) == set(STAGES)
    data = repo / "data" / "defects"
    for rel in [
        "acquire/table.parquet",
        "acquire/mvtec/surface/train/good/000.png",
        "acquire/mvtec/part/ground_truth/crack/000_mask.png",
        "validate/validated.parquet",
        "validate/quarantine.parquet",
        "validate/gate.json",
        "validate/gate.html",
        "prepare/images.npy",
        "prepare/masks.npy",
        "prepare/items.parquet",
        "prepare/info.json",
        *(f"train/{model}.{category}{suffix}" for model, suffix in MODEL_FILES for category in BOTH),
        "train/routing.json",
        "evaluate/tables/per_category_auroc.csv",
        "train/thresholds.json",
        "train/times.json",
        "train/history.json",
        "evaluate/metrics.json",
        "evaluate/decision.json",
        "evaluate/plots/roc_curve.csv",
        "evaluate/plots/per_type_auroc.csv",
        "evaluate/tables/per_type_auroc.csv",
        "evaluate/tables/test_images.csv",
        "report/report.html",
        "report/report.md",
        "report/provenance.json",
    ]:
        assert (data / rel).is_file(), rel
    metrics = json.loads((data / "evaluate/metrics.json").read_text())
    assert set(metrics) == {"patch_gaussian", "segmenter", "draem"}
    assert (
        {
            "image_auroc",
            "pixel_auroc",
            "f1",
            "precision",
            "recall",
            "threshold",
            "fit_seconds",
            "images_per_second",
            "auroc_scratch",
            "auroc_spot",
            "auroc_crack",
            "auroc_missing",
            "routed_correctly",
            *(f"{level}_auroc_{category}" for level in ("image", "pixel") for category in BOTH),
        }
        == {k for k in metrics["segmenter"] if "_ci_" not in k}
        == {k for k in metrics["draem"] if "_ci_" not in k}
    )
    # issue 19: an interval over test images; slices by defect type (each against the good images) and brightness
    for model in metrics.values():
        assert model["image_auroc_ci_low"] <= model["image_auroc"] <= model["image_auroc_ci_high"]
    slices = pd.read_csv(data / "evaluate/tables/slices.csv")
    by_type = slices[slices["slice"] == "type"].set_index("group")
    assert set(by_type.index) == {"scratch", "spot", "crack", "missing"}
    for kind in by_type.index:  # the same number as the per-type AUROC
        assert by_type.loc[kind, "segmenter"] == pytest.approx(metrics["segmenter"][f"auroc_{kind}"])
    assert json.loads((data / "validate/gate.json").read_text())["verdict"] == "pass"
    assert json.loads((data / "evaluate/decision.json").read_text())["candidate"] == "segmenter"
    html = (data / "report/report.html").read_text()
    assert "data:image/png;base64," in html and 'src="http' not in html  # self-contained
    for title in (
        "ROC curves",
        "Image scores per defect type",
        "Anomaly maps of segmenter",
        "Every model on the same defects",
        "segmenter (surface) training curve",
        "draem (part) training curve",
        "Anomaly maps of segmenter, category part",
        "Per type auroc",
    ):
        assert title in html, title
    summary = html[html.index("<h2>Summary</h2>") : html.index("<h2>Metrics")]
    for name, m in metrics.items():  # a model near chance is named next to the decision, and only then
        candidate = " (the candidate)" if name == "segmenter" else ""
        for place, value in [("", m["image_auroc"]), *((f" on category {c}", m[f"image_auroc_{c}"]) for c in BOTH)]:
            assert (f"{name}{candidate} is near chance{place} on the test set" in summary) == (value < 0.6)
    assert "pixel_auroc" in run(["dvc", "metrics", "show"], repo).stdout


def test_the_part_segmenter_aligns_poses_and_the_surface_one_does_not(repo):
    from domains.defects.segmenter import load_segmenter

    train = repo / "data" / "defects" / "train"
    assert load_segmenter(train / "segmenter.part.pt").align  # train.align: auto, by the images alone
    assert not load_segmenter(train / "segmenter.surface.pt").align
    report = (repo / "data" / "defects" / "report" / "report.md").read_text()
    assert "the segmenter turns and centres category part to its object's canonical pose" in report
    assert "not surface: no object of a steady size" in report


def test_flip_averaging_is_saved_with_each_segmenter_and_reported(repo):
    from domains.defects.segmenter import load_segmenter

    train = repo / "data" / "defects" / "train"
    assert all(load_segmenter(train / f"segmenter.{category}.pt").flip_average for category in BOTH)
    report = (repo / "data" / "defects" / "report" / "report.md").read_text()
    assert "Flip averaging (train.flip_average: true): the segmenter's map of category surface, category part" in report


def test_second_repro_runs_no_stage(repo):
    assert_noop_repro(repo, "defects")


def test_same_seed_gives_identical_metrics(repo):
    assert_retrain_reproduces(repo, "defects")
