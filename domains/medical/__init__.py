"""Medical imaging: MedMNIST-style images (synthetic, medmnist .npz, image-folder); a ResNet-style CNN
from scratch against scikit-learn baselines on the pixels."""

from domains.common.classification import DIRECTIONS, RANGES
from domains.common.contract import UNIT, DomainSpec, MetricContract, ScoringSpec, ServingSpec, lazy
from domains.medical.params import MedicalParams

SOURCES = ("synthetic", "medmnist", "image-folder")

DOMAIN = DomainSpec(
    name="medical",
    title="Medical imaging (MedMNIST-style classification)",
    params_model=MedicalParams,
    sources=SOURCES,
    metric=MetricContract(
        primary="auroc",
        higher_is_better={
            **DIRECTIONS,
            **{f"{m}_at_threshold": True for m in ("accuracy", "sensitivity", "specificity", "f1")},
        },
        intervals={"auroc": "auroc", "accuracy": "accuracy"},
        ranges={**RANGES, **{f"{m}_at_threshold": UNIT for m in ("accuracy", "sensitivity", "specificity", "f1")}},
    ),
    acquire=lazy("domains.medical.pipeline:acquire"),
    gate_suite=lazy("domains.medical.checks:gate_suite"),
    prepare=lazy("domains.medical.pipeline:prepare"),
    train=lazy("domains.medical.train:train_models"),
    evaluate=lazy("domains.medical.evaluate:evaluate_models"),
    scoring=ScoringSpec(
        sources=("medmnist", "image-folder"),  # synthetic writes a MedMNIST .npz: its format first
        read=lazy("domains.medical.score:read_batch"),
        read_chunks=lazy("domains.medical.score:read_chunks"),
        gate_suite=lazy("domains.medical.checks:scoring_suite"),
        reference=lazy("domains.medical.score:reference"),
        score=lazy("domains.medical.score:score_batch"),
        serving=ServingSpec(
            request=lazy("domains.medical.serve:request_model"),
            table=lazy("domains.medical.serve:to_table"),
            respond=lazy("domains.medical.serve:respond"),
            describe=lazy("domains.medical.serve:describe"),
            source_field="image",
            onnx=lazy("domains.medical.serve:onnx"),
        ),
    ),
    export=lazy("domains.medical.export:export_models"),
    slice_columns={
        "class": "the image's true class",
        "brightness": "mean pixel value of the prepared image (0-255)",
        "contrast": "pixel standard deviation of the prepared image (0-255)",
    },
)
