"""Load params.yaml and validate every domain's section against its typed model.

A typo or a bad value stops with one line naming the key, before any work starts.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domains.common.errors import ParamsError

Severity = Literal["block", "warn", "quarantine", "info"]


class StrictModel(BaseModel):
    """Unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(StrictModel):
    source: str = Field(description="'synthetic' or the name of a real format the domain reads")
    path: str = Field(description="file or folder read by a real source; a DVC dependency either way")


class GateParams(StrictModel):
    severity: dict[str, Severity] = Field(default_factory=dict, description="check name -> severity override")
    max_quarantine_fraction: float = Field(0.01, ge=0.0, le=1.0)
    max_warnings: int = Field(0, ge=0, description="warnings tolerated before a model may not be promoted")


class ItemGateParams(GateParams):
    """Bounds of the item-table checks, shared by the text and image domains."""

    min_per_class: int = Field(10, ge=1, description="items of each class in each split, at least")
    class_share_min: float = Field(0.05, ge=0, le=1, description="each class's share of its split, at least")
    class_share_max: float = Field(0.95, ge=0, le=1, description="each class's share of its split, at most")


class ImageGateParams(ItemGateParams):
    """Bounds of the per-image checks (next to the item checks)."""

    min_pixel_std: float = Field(
        1.0, ge=0, description="images whose pixel std (on a 0-255 scale) is at most this are constant"
    )
    max_saturated_fraction: float = Field(
        0.5, gt=0, le=1, description="share of pixels at the type's min or max, at most"
    )
    consistent_shape: bool = Field(True, description="every image has the most common height x width x channels")


class TrainerParams(StrictModel):
    """Settings of the shared torch trainer (domains add their model's own keys)."""

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw"] = Field("adam", description="adamw: weight decay decoupled from the gradient")
    patience: int = Field(3, ge=1, description="epochs without validation improvement before stopping")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: decay to 0 over the planned epochs"
    )
    warmup_epochs: int = Field(0, ge=0, description="cosine: linear warm-up epochs first")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool = True
    deterministic: bool = True
    num_threads: int = Field(2, ge=1, description="CPU threads of the training, shared among its processes")
    processes: int = Field(
        1,
        ge=1,
        description="training processes under torchrun, one per GPU on CUDA (DistributedDataParallel); 1: no torchrun",
    )


class AugmentParams(StrictModel):
    """Random transformations of training images (each applied per image, on the device)."""

    hflip: bool = Field(True, description="mirror left-right with probability 0.5")
    vflip: bool = Field(False, description="mirror top-bottom with probability 0.5 (textures, not anatomy)")
    rotate_degrees: float = Field(10.0, ge=0, le=180)
    translate: float = Field(0.08, ge=0, le=0.5, description="shift, as a share of the image size")
    scale: float = Field(0.1, ge=0, lt=1, description="zoom in or out by up to this share")
    brightness: float = Field(0.1, ge=0, le=1, description="add up to this much (images in [0, 1])")
    contrast: float = Field(0.1, ge=0, lt=1, description="scale the contrast by 1 +- this")


class SliceParams(StrictModel):
    """A slice of the test split: groups by a column's bands (`bins`: edges) or by its values."""

    column: str = Field(description="one of the domain's slice columns")
    bins: list[float] | None = Field(None, min_length=1, description="band edges; null: one group per value")
    protected: bool = Field(False, description="a protected attribute: the report shows the best-worst group gap")
    reference: str | None = Field(
        None,
        description="a value of the column scored with every group and not a group "
        "itself: defects by type, each type against the good images",
    )
    metric: str | None = Field(
        None,
        description="default: the primary metric; e.g. accuracy for slices by true class, "
        "where AUROC is undefined (only the primary's slices are judged)",
    )


class NonInferiorityParams(StrictModel):
    """Promote a challenger that is not worse by more than `margin` when policy prefers it."""

    margin: float = Field(gt=0, description="how much worse the lower bound of the difference may be")
    prefer: Literal["newer", "cheaper"] = Field("newer", description="newer: always; cheaper: lower cost_metric")
    cost_metric: str = Field("predict_seconds", description="prefer: cheaper compares this metric (lower is cheaper)")


class EvaluateParams(StrictModel):
    candidate: str = Field(description="model proposed as challenger to the champion")
    baselines: list[str] = Field(
        default_factory=list,
        description="models the candidate must beat on the promotion metric (same split) before it may be promoted",
    )
    baseline_margin: float = Field(
        0.0,
        description="... by more than this, in the metric's units (checked against "
        "the metric's range when params load)",
    )
    thresholds_min: dict[str, float] = Field(default_factory=dict, description="absolute floors (optional)")
    thresholds_max: dict[str, float] = Field(default_factory=dict, description="absolute ceilings (optional)")
    resamples: int = Field(1000, ge=100, description="bootstrap resamples of the test units for 95 % intervals")
    margin: float = Field(0.0, ge=0, description="promote when the paired difference's lower bound is above this")
    non_inferiority: NonInferiorityParams | None = None
    slices: dict[str, SliceParams] = Field(default_factory=dict)
    min_slice_size: int = Field(30, ge=1, description="units a slice group needs to be judged")
    min_slice_metric: float | None = Field(
        None, description="no promotion when a judged group's primary metric is worse"
    )

    @model_validator(mode="after")
    def _candidate_not_a_baseline(self) -> EvaluateParams:
        if self.candidate in self.baselines:
            raise ValueError(f"baselines: the candidate '{self.candidate}' cannot be its own baseline")
        return self


class DriftParams(StrictModel):
    """Thresholds of the drift gate at scoring time (PSI over the reference's bins)."""

    psi_warn: float = Field(0.1, gt=0, description="PSI at or above this is reported as a warning")
    psi_block: float = Field(0.25, gt=0, description="PSI at or above this blocks the batch: no scores are written")
    min_rows: int = Field(100, ge=1, description="batches with fewer rows are too small to judge: drift not checked")

    @model_validator(mode="after")
    def _warn_below_block(self) -> DriftParams:
        if self.psi_warn > self.psi_block:
            raise ValueError(f"psi_warn {self.psi_warn} is above psi_block {self.psi_block}")
        return self


class ScoreParams(StrictModel):
    """`aiflow score`: the drift gate; the data gate's severities and quarantine limit are `gate`'s."""

    chunk_rows: int = Field(
        100_000,
        ge=0,
        description="rows read, gated and scored at a time where the input format reads in pieces "
        "(fraud's tables): memory follows this, not the batch; 0: the whole batch at once",
    )
    drift: DriftParams = DriftParams()


class DomainParams(StrictModel):
    """Keys every domain section has; a domain subclasses it to add its own sections."""

    seed: int = 0
    data: DataParams
    gate: GateParams = GateParams()
    evaluate: EvaluateParams
    score: ScoreParams = ScoreParams()

    @model_validator(mode="after")
    def _thresholds_disjoint(self) -> DomainParams:
        both = set(self.evaluate.thresholds_min) & set(self.evaluate.thresholds_max)
        if both:
            raise ValueError(f"evaluate: metric(s) {sorted(both)} have both a min and a max threshold")
        return self


# libyaml's parser where PyYAML has it (the same safe subset, several times faster): params.yaml and dvc.lock
# are read on every scoring call.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=SAFE_LOADER)  # a safe loader either way


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = parse_yaml(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path.name}: not found at {path}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path.name}:{where} is not valid YAML") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path.name}: top level must be a mapping of domain sections")
    return raw


def validate_section(model: type[DomainParams], domain: str, section: Any, file_name: str) -> DomainParams:
    """Validate one domain's section; the first error becomes a one-line ParamsError."""
    try:
        return model.model_validate(section)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in (domain, *first["loc"]))
        if first["type"] == "extra_forbidden":
            parent_fields = _fields_at(model, first["loc"][:-1])
            hint = difflib.get_close_matches(str(first["loc"][-1]), parent_fields, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(parent_fields)})"
            raise ParamsError(f"{file_name}: {key}: unknown key{suggestion}") from None
        # a check across keys gets the whole mapping as its input; its message names the keys instead
        shown = first["type"] != "missing" and not isinstance(first["input"], dict)
        got = f" (got {first['input']!r})" if shown else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ParamsError(f"{file_name}: {key}: {message}{got}") from None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the nested model at `loc`, for did-you-mean hints."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        current = fields[part].annotation
    return sorted(getattr(current, "model_fields", {}))
