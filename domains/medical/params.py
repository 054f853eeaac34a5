"""Typed params of the medical imaging domain (the `medical:` section of params.yaml)."""

from __future__ import annotations

from pydantic import Field, model_validator

from domains.common.params import (
    AugmentParams,
    DataParams,
    DomainParams,
    EvaluateParams,
    ImageGateParams,
    StrictModel,
    TrainerParams,
)


class MedicalDataParams(DataParams):
    classes: list[str] = Field(
        default_factory=lambda: ["normal", "pneumonia"],
        min_length=2,
        description="class names in label order: MedMNIST label i is classes[i]; image-folder: the class folder names",
    )
    val_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="image-folder without val/: share of train carved out (stratified)"
    )


class SyntheticParams(StrictModel):
    """Chest-radiograph-like images (torso, lungs, ribs, spine, heart) with diffuse opacities as the
    positive class, written as a MedMNIST .npz; the opacity strength sets how separable the classes are."""

    image_size: int = Field(32, ge=16, le=256)
    n_train: int = Field(2400, ge=20)
    n_val: int = Field(400, ge=10)
    n_test: int = Field(600, ge=10)
    positive_rate: float = Field(
        0.6, gt=0, lt=1, description="share of positive images (PneumoniaMNIST: 0.74 in train)"
    )
    opacity_strength: float = Field(
        0.5, gt=0, description="peak brightness of an opacity, in units of the lung-to-tissue contrast"
    )
    opacity_min: float = Field(
        0.15, ge=0, le=1, description="an opacity's strength is drawn from [opacity_min, 1] x opacity_strength"
    )
    noise_std: float = Field(0.08, ge=0, description="pixel noise, in units of the lung-to-tissue contrast")
    label_noise: float = Field(
        0.02, ge=0, lt=0.5, description="share of labels flipped: no model can be right on these"
    )


class PrepareParams(StrictModel):
    image_size: int = Field(32, ge=8, le=512, description="models see images resized to this many pixels a side")


class MedicalTrainParams(TrainerParams):
    widths: list[int] = Field(
        default_factory=lambda: [16, 32, 64], min_length=1, description="channels of each ResNet stage"
    )
    blocks: list[int] = Field(default_factory=lambda: [1, 1, 1], min_length=1, description="residual blocks per stage")
    dropout: float = Field(0.1, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    class_weighted: bool = Field(False, description="weight the loss so every class pulls equally")
    augment: AugmentParams = AugmentParams()
    tta: bool = Field(True, description="test-time augmentation: average the CNN over the image and its mirror")
    logreg_c: float = Field(0.05, gt=0, description="inverse L2 strength of the pixel logistic regression")
    hgb_max_iter: int = Field(200, ge=1)
    baseline_size: int = Field(14, ge=4, description="the scikit-learn baselines see images downsampled to this size")

    @model_validator(mode="after")
    def _stages(self) -> MedicalTrainParams:
        if len(self.widths) != len(self.blocks):
            raise ValueError("widths and blocks need one entry per ResNet stage")
        return self


class MedicalEvaluateParams(EvaluateParams):
    example_images: bool = Field(
        True,
        description="show test images and saliency maps in the report; "
        "false for data that must not leave the machine (aggregates only)",
    )
    n_examples: int = Field(8, ge=1, le=32, description="images per example grid")


class MedicalParams(DomainParams):
    data: MedicalDataParams
    synthetic: SyntheticParams = SyntheticParams()
    gate: ImageGateParams = ImageGateParams()
    prepare: PrepareParams = PrepareParams()
    train: MedicalTrainParams = MedicalTrainParams()
    evaluate: MedicalEvaluateParams
