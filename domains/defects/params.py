"""Typed params of the vision defect detection domain (the `defects:` section of params.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from domains.common.params import DataParams, DomainParams, EvaluateParams, ImageGateParams, StrictModel, TrainerParams

DefectType = Literal["scratch", "spot", "crack", "missing"]
# what fills the segmenter's pasted anomalies (domains/defects/anomalies.py)
AnomalyFill = Literal["turned", "darker_brighter", "other_darker_brighter", "level", "other_same_brightness"]
DEFAULT_FILLS: tuple[AnomalyFill, ...] = ("turned", "darker_brighter", "other_darker_brighter", "level")


class DefectsDataParams(DataParams):
    """The source, and how its good images are shared out between training, threshold and test."""

    val_fraction: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="share of the good training images held out to choose "
        "the decision threshold (and to validate the torch model); seeded",
    )
    split: Literal["published", "seeded"] = Field(
        "published",
        description="magnetic-tile only: 'published' "
        "(DifferNet's 761 MT_Free training names, the rest tested) or "
        "'seeded' (test_good_fraction of MT_Free tested)",
    )
    train_list: str | None = Field(
        None,
        description="magnetic-tile, published split: the file of MT_Free training "
        "names; default: <path>/differnet_train_filenames.txt",
    )
    categories: list[str] | None = Field(
        None,
        min_length=1,
        description="mvtec only: path is then the dataset's folder and these are its category folders, "
        "each evaluated on its own (train.per_category: a model per category, or one for all); default: path "
        "is one category folder",
    )
    test_good_fraction: float = Field(
        0.3,
        gt=0,
        lt=0.9,
        description="magnetic-tile, seeded split: share of MT_Free "
        "tested (the rest is trained on); every defect image is tested",
    )


class SyntheticParams(StrictModel):
    """Textured surfaces (grain, gradients, noise) or parts on a background, with injected defects, written
    in MVTec AD's layout."""

    category: Literal["surface", "part", "both"] = Field(
        "both",
        description="surface: a texture filling the image; "
        "part: an object on a background at a random pose, defects on it; "
        "both: a category folder of each (the counts below are per category; see train.per_category)",
    )
    pose_shift: float = Field(
        0.06,
        ge=0,
        le=0.15,
        description="part: the largest shift of its centre, as a share of the side (it is also turned by any angle)",
    )
    image_size: int = Field(128, ge=32, le=1024, description="square images of this many pixels a side")
    channels: Literal[1, 3] = Field(1, description="1: grey (PNG 'L'); 3: tinted RGB")
    n_train: int = Field(100, ge=2, description="good images in train/good (of each category)")
    n_test_good: int = Field(40, ge=1, description="good images in test/good")
    n_test_per_type: int = Field(15, ge=1, description="defective test images of each type")
    defect_types: list[DefectType] = Field(["scratch", "spot", "crack", "missing"], min_length=1)
    defect_contrast: float = Field(1.0, gt=0, le=3, description="scales every defect's contrast (lower: harder)")


class DefectsGateParams(ImageGateParams):
    """Bounds of the defect checks, next to the shared per-image and item checks.

    `consistent_shape` and `max_soft_mask_fraction` default per source (None): MVTec images of one
    category share one size and its masks are 0/255; Magnetic-Tile crops vary in size by design
    and its published masks are anti-aliased (the loader binarises them at half their maximum).
    """

    consistent_shape: bool | None = Field(
        None,
        description="every image has the most common height x width x channels; default: yes, except for magnetic-tile",
    )  # type: ignore[assignment]  # None: per source
    max_soft_mask_fraction: float | None = Field(
        None,
        ge=0,
        le=1,
        description="share of a mask's non-zero pixels "
        "strictly between 0 and its maximum, at most; default: 0, magnetic-tile 1",
    )
    min_train_good: int = Field(20, ge=1, description="good images to train on, at least")
    min_val_good: int = Field(2, ge=1, description="held-out good images to choose the threshold on, at least")
    min_test_good: int = Field(1, ge=1, description="good test images, at least")
    min_test_defective: int = Field(1, ge=1, description="defective test images, at least")


class PrepareParams(StrictModel):
    image_size: int = Field(
        128,
        ge=32,
        le=1024,
        description="images and masks are resized to this square size "
        "(anomaly maps and pixel metrics are at this resolution)",
    )
    tiles: bool = Field(
        False,
        description="also cut every image, resized with its aspect kept (short side image_size), into square "
        "tiles along its long side (domains/defects/tiles.py): the segmenter's neighbour_distance then adds a "
        "second distance on them, for thin defects that the square resize squeezes away in wide or tall images",
    )


class DefectsTrainParams(TrainerParams):
    """The torch models (shared trainer keys + their own), the scikit-learn baseline, the optional PatchCore."""

    models: list[Literal["patch_gaussian", "segmenter", "draem"]] = Field(
        ["patch_gaussian", "segmenter"],
        min_length=1,
        description="models trained from scratch (PatchCore joins when backbone_weights names a file)",
    )

    per_category: bool = Field(
        True,
        description="with several categories (synthetic both, data.categories): one model of each kind per "
        "category, each image routed to its category's by its look (MVTec AD's protocol); false: one model "
        "learns every category (UniAD's unified setting)",
    )
    width: int = Field(16, ge=4, description="channels of the segmenter's first stage (doubled at each of 3 stages)")
    crop: int | None = Field(
        None,
        ge=16,
        description="train on random square crops of this size (the network is "
        "fully convolutional and scores whole images); default: whole images",
    )
    anomaly_share: float = Field(0.5, gt=0, le=1, description="share of each training batch given a pasted anomaly")
    anomaly_fills: list[AnomalyFill] = Field(
        list(DEFAULT_FILLS),
        min_length=1,
        description="segmenter: what fills a pasted anomaly, one drawn per image (domains/defects/anomalies.py); "
        "+ other_same_brightness for textures whose defects are patches of another finish (README)",
    )
    foreground: bool = Field(
        True,
        description="segmenter: paste anomalies only on an object's foreground (where an image differs from "
        "its border): a part's, not its background's; a texture is mostly foreground (a gradient across one "
        "reads partly as background)",
    )
    align: bool | Literal["auto"] = Field(
        "auto",
        description="segmenter: turn and centre each image to its object's canonical pose (foreground moments, "
        "pose.py) before the network, maps turned back; auto: when the training images show one object of a "
        "steady size whose outline names an axis (parts; not textures, not round parts); false where a turned "
        "part is itself a defect",
    )
    flip_average: bool | Literal["auto"] = Field(
        "auto",
        description="segmenter: each anomaly map the mean over the image and its left-right, upside-down and "
        "double flips (training augments with them; 4x the scoring work); auto: where it raises the validation "
        "pixel AP at the end of training",
    )
    shift_average: bool | Literal["auto"] = Field(
        False,
        description="segmenter: each anomaly map also the mean over the image shifted by half a logit cell (2 px) "
        "down, right and both, each shifted back (the logits' 1/4-resolution grid falls elsewhere on a defect; 4x "
        "the scoring work again); auto: where it raises the validation pixel AP at the end of training",
    )
    rotate: bool = Field(
        False,
        description="segmenter: turn each training batch by a random multiple of 90 degrees; for parts at any "
        "pose, not for textures with one grain direction or parts whose turn is a defect",
    )
    val_anomalies: int = Field(
        2,
        ge=1,
        description="validation: copies of each held-out good image with a pasted "
        "anomaly (seeded), scored against the images as they are",
    )
    draem_width: int = Field(
        8,
        ge=2,
        description="DRAEM: channels of the reconstructive network's first stage "
        "(the discriminative network gets half, at least 4); the paper's: 128",
    )
    draem_size: int | None = Field(
        64,
        ge=32,
        description="DRAEM: the square resolution both networks work at "
        "(maps are upsampled to prepare.image_size); default: prepare.image_size; paper: 256",
    )
    draem_sources: list[Literal["texture", "image"]] = Field(
        ["texture", "image"],
        min_length=1,
        description="DRAEM: what fills a simulated anomaly: generated textures, other training images",
    )
    draem_focal_weight: float = Field(
        10.0, gt=0, description="DRAEM: weight of the focal (segmentation) loss against L2 + SSIM; paper: 1"
    )
    draem_dice_weight: float = Field(
        0.5, ge=0, description="DRAEM: weight of a soft Dice term on the segmentation; paper: 0 (none)"
    )
    draem_foreground: bool = Field(
        True,
        description="DRAEM: anomalies only where an image differs from its border "
        "(an object's foreground); textures, all foreground, are unaffected",
    )
    baseline_patch: int = Field(8, ge=2, description="baseline: side of the patches its PCA reconstructs")
    baseline_components: int = Field(12, ge=1, description="baseline: principal components kept")
    baseline_patches_per_image: int = Field(400, ge=10, description="baseline: patches sampled per training image")
    backbone_weights: str | None = Field(
        None,
        description="adds PatchCore: torchvision's ImageNet state dict file "
        "(resnet18-*.pth or wide_resnet50_2-*.pth), or 'resnet18' / "
        "'wide_resnet50_2' to take it from torch's hub cache; nothing is downloaded",
    )
    memory_bank: int = Field(
        4000,
        ge=10,
        description="patch features kept: PatchCore's (a random subsample), the segmenter's neighbour_distance "
        "bank (a greedy coreset)",
    )
    neighbour_distance: bool = Field(
        False,
        description="segmenter: add to each image's score how far its patches are from every good training "
        "patch, in the segmenter's own features (domains/defects/neighbours.py; one model for all images)",
    )
    score_pool: float = Field(
        0.04,
        ge=0,
        lt=0.5,
        description="image score: the maximum of the anomaly map after a "
        "box filter of this share of the image side (0: the raw maximum)",
    )
    threshold_quantile: float = Field(
        0.95, gt=0, le=1, description="decision threshold: this quantile of the held-out good images' scores"
    )


class DefectsEvaluateParams(EvaluateParams):
    overlays: int = Field(3, ge=1, description="test images shown with their anomaly maps per group (best and worst)")


class DefectsParams(DomainParams):
    data: DefectsDataParams
    synthetic: SyntheticParams = SyntheticParams()
    gate: DefectsGateParams = DefectsGateParams()
    prepare: PrepareParams = PrepareParams()
    train: DefectsTrainParams = DefectsTrainParams()
    evaluate: DefectsEvaluateParams

    @model_validator(mode="after")
    def _candidate_and_baselines_are_trained(self) -> DefectsParams:
        # checked before training: evaluate would stop only after the models are trained
        trained = [*self.train.models, *(["patchcore"] if self.train.backbone_weights else [])]
        for key, name in [("candidate", self.evaluate.candidate), *(("baselines", b) for b in self.evaluate.baselines)]:
            if name not in trained:
                raise ValueError(
                    f"evaluate.{key}: '{name}' is not trained (train.models and backbone_weights give {', '.join(trained)})"
                )
        return self

    @model_validator(mode="after")
    def _categories_are_mvtec(self) -> DefectsParams:
        names = self.data.categories
        if names is not None and self.data.source != "mvtec":
            raise ValueError(f"data.categories: for source mvtec only (source is {self.data.source})")
        if names is not None and len(set(names)) != len(names):
            raise ValueError(f"data.categories: a category is named twice ({', '.join(names)})")
        return self

    @model_validator(mode="after")
    def _tiles_are_read(self) -> DefectsParams:
        if self.prepare.tiles and not (self.train.neighbour_distance and "segmenter" in self.train.models):
            raise ValueError(
                "prepare.tiles: only the segmenter's nearest-neighbour distance reads them; "
                "set train.neighbour_distance: true with the segmenter in train.models, or prepare.tiles: false"
            )
        return self

    @model_validator(mode="after")
    def _crop_fits(self) -> DefectsParams:
        if self.train.crop is not None and self.train.crop > self.prepare.image_size:
            raise ValueError(
                f"train.crop ({self.train.crop}) is larger than prepare.image_size ({self.prepare.image_size})"
            )
        return self
