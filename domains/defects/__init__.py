"""Vision defect detection: unsupervised anomaly detection on images of good parts (synthetic, mvtec,
magnetic-tile); a scikit-learn patch Gaussian, a torch anomaly segmenter, DRAEM (opt-in), optionally PatchCore."""

from domains.common.contract import UNIT, DomainSpec, MetricContract, ScoringSpec, ServingSpec, lazy
from domains.defects.params import DefectsParams

SOURCES = ("synthetic", "mvtec", "magnetic-tile")
# Direction of every metric a model gets (per-type AUROCs, "auroc_<type>", default to higher is better).
DIRECTIONS: dict[str, bool] = {
    "image_auroc": True,
    "pixel_auroc": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "images_per_second": True,
    "fit_seconds": False,
}

DOMAIN = DomainSpec(
    name="defects",
    title="Vision defect detection (unsupervised anomaly detection)",
    params_model=DefectsParams,
    sources=SOURCES,
    metric=MetricContract(
        primary="image_auroc",
        higher_is_better=DIRECTIONS,
        intervals={"image_auroc": "auroc"},
        ranges={m: UNIT for m in ("image_auroc", "pixel_auroc", "f1", "precision", "recall")},
    ),
    acquire=lazy("domains.defects.pipeline:acquire"),
    gate_suite=lazy("domains.defects.checks:gate_suite"),
    prepare=lazy("domains.defects.pipeline:prepare"),
    train=lazy("domains.defects.train:train_models"),
    evaluate=lazy("domains.defects.evaluate:evaluate_models"),
    scoring=ScoringSpec(
        sources=("mvtec",),  # synthetic writes MVTec's layout; a flat folder or <type>/ folders read the same
        read=lazy("domains.defects.score:read_batch"),
        read_chunks=lazy("domains.defects.score:read_chunks"),
        gate_suite=lazy("domains.defects.checks:scoring_suite"),
        reference=lazy("domains.defects.score:reference"),
        score=lazy("domains.defects.score:score_batch"),
        serving=ServingSpec(
            request=lazy("domains.defects.serve:request_model"),
            table=lazy("domains.defects.serve:to_table"),
            respond=lazy("domains.defects.serve:respond"),
            describe=lazy("domains.defects.serve:describe"),
            onnx=lazy("domains.defects.serve:onnx"),
            source_field="image",
        ),
    ),
    export=lazy("domains.defects.export:export_models"),
    slice_columns={
        "type": "the test image's defect type ('good' for a good image)",
        "category": "the image's category (its MVTec category folder; one per source otherwise)",
        "brightness": "mean pixel value of the prepared image (0-255)",
        "aspect": "the source image's width / height, before the square resize (Magnetic-Tile's crops: 0.4-2.6)",
    },
)
