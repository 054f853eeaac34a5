"""The contract between a domain and the shared machinery.

A domain is a package `domains/<name>/` whose `__init__.py` exposes `DOMAIN = DomainSpec(...)`,
plus a `<name>:` section in params.yaml validated by `DomainSpec.params_model`. The runner
(`domains.common.stages`) owns files, timing, the gate, thresholds, the champion and the report;
the domain supplies plain functions over DataFrames and directories:

    acquire(params, out_dir)              -> table to gate (payload files may go in out_dir)
    gate_suite(params)                    -> GateSuite (pandera schema + GX expectations)
    prepare(params, table, acquire_dir, out_dir)   writes features / splits
    train(params, prepared_dir, out_dir, env)      writes models
    evaluate(params, prepared_dir, train_dir, out_dir) -> Evaluation (metrics per model, plots)

Give them as `lazy("domains.<name>.<module>:<function>")`, so each stage imports only what it
runs: a light stage does not pay for torch, scikit-learn or matplotlib at start-up.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from domains.common.params import DomainParams

if TYPE_CHECKING:  # for annotations only: reading a domain's spec (the CLI, the flows) needs no pandas or pandera
    import numpy as np
    import pandas as pd

    from domains.common.gate import GateSuite

P = TypeVar("P", bound=DomainParams)


def lazy(target: str) -> Callable[..., Any]:
    """The function at 'package.module:function', imported when first called."""
    module, _, name = target.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = name
    return call


def kind_range(kind: str) -> tuple[float, float]:
    """The values a metric of this interval kind can take: every kind but rmse is a share or a mean of shares."""
    return (0.0, float("inf")) if kind.startswith("rmse") else (0.0, 1.0)


UNIT = (0.0, 1.0)  # the range of AUROC, accuracy, precision, NDCG and other shares


@dataclass(frozen=True)
class MetricContract:
    """Which metric decides promotion, and the direction of every metric a domain reports.

    A domain whose evaluate params have a `primary` field lets params choose it (stages.primary_metric).
    """

    primary: str
    higher_is_better: dict[str, bool]
    # metric -> how it is computed from the per-unit predictions (domains.common.units): these metrics get a
    # bootstrap interval, and the primary one, when listed, a paired comparison with the champion
    intervals: dict[str, str] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # bounded metrics; others are unbounded

    def range(self, metric: str) -> tuple[float, float]:
        """The values `metric` can take (what a baseline margin is checked against)."""
        return self.ranges.get(metric, (-math.inf, math.inf))

    def better(self, metric: str, a: float, b: float) -> bool:
        """True when value `a` is strictly better than `b` for `metric`."""
        return a > b if self.higher_is_better.get(metric, True) else a < b


@dataclass(frozen=True)
class TrainEnv:
    """What the runner hands to a domain's train function."""

    checkpoint_dir: Path
    fingerprint: str  # hash of the train stage's inputs: a checkpoint resumes only on a match


@dataclass
class Figure:
    """A report figure: a matplotlib figure and a caption."""

    title: str
    figure: Any
    caption: str = ""


@dataclass
class Evaluation:
    """What a domain's evaluate returns. `metrics[model][metric]`, all models on the same split."""

    metrics: dict[str, dict[str, float]]
    plots: dict[str, pd.DataFrame] = field(default_factory=dict)  # DVC plot data, written as CSV
    figures: list[Figure] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # extra report tables
    notes: list[str] = field(default_factory=list)
    units: pd.DataFrame | None = None  # per-row predictions on the test split (layout: domains.common.units)


@dataclass
class Reference:
    """What a model's drift profile is built from, at the end of training."""

    frame: pd.DataFrame  # the drift columns of the training split, one row per item
    scores: dict[str, np.ndarray]  # each model's scores on the test split (the score drift reference)


@dataclass(frozen=True)
class ScoreOptions:
    """What a user may add to a scoring run (`aiflow score --help`)."""

    history: Path | None = None  # fraud: labelled earlier transactions the window features may look back on
    history_rows: pd.DataFrame | None = None  # fraud: the same, already read (the HTTP endpoint; wins over `history`)
    past_from: np.ndarray | None = None  # fraud: per row, the time (ns) its past is known from (default: the earliest
    # row of batch and history; the endpoint scores requests together, each with its own)
    # (model name, the features score computed for it) -> the model's output from its exported graph, in the shape
    # the domain's score expects: another runtime of the same model (the endpoint's ONNX); None: the trained model
    # itself. Medical: P(positive) per image; recsys: the score matrix (users x items, a frame; recsys/serve.onnx);
    # defects: (anomaly maps, image scores)
    predict: Callable[[str, Any], Any] | None = None
    explain: bool = False  # medical: Grad-CAM maps
    maps_dir: Path | None = None  # where a domain writes per-item images (anomaly maps, Grad-CAM)
    chunked: bool = False  # the batch comes in chunks (ScoringSpec.read_chunks): return what the next one needs
    carry: Any = None  # what the previous chunk's score returned in Scored.carry (None: the first chunk)
    drift: bool = True  # False: the caller judges no drift (the endpoint), what only drift needs may be left out


@dataclass
class Scored:
    """What a domain's score returns: predictions in input order, and what drift is judged on."""

    predictions: pd.DataFrame  # one row per scored item; `item_id` first
    drift: pd.DataFrame  # the reference's drift columns, one row per scored item
    scores: np.ndarray | None  # the model's score per item (None: no score drift)
    shadow_metrics: dict[str, float] | None = None  # on the batch's own labels, when it has them
    notes: list[str] = field(default_factory=list)
    carry: Any = None  # chunked: handed to the next chunk's score (ScoreOptions.carry)


@dataclass(frozen=True)
class ServingSpec(Generic[P]):
    """How the HTTP endpoint (`aiflow serve-model`) turns a request into what `read` gives a batch, so a
    request goes through the same gate and the same `score` as a file (see domains/common/serving.py).

        request(params)                        -> the pydantic model of one request body (limits, types)
        table(params, body, scratch)           -> the table `read` would give (payload files go in scratch)
        tables(params, bodies, scratch)        -> the same for several requests at once, as one table: each
                                                  request's items in turn (optional: one conversion for a whole
                                                  batch, where per call costs dominate)
        combine(params, table, sizes, bodies, context) -> the table and options to score several requests
                                                  together, each as if alone (`table`: their gated rows, `sizes[k]`
                                                  of bodies[k] in turn; default: the table as it is)
        respond(params, predictions, body, scratch) -> one request's output rows (default: the prediction
                                                  rows); may refuse it (serving.RequestError) on what scoring found
        describe(params, model_dir, model)     -> what /metadata adds (threshold, classes, ...)
        onnx(params, model_dir, export_dir, model, int8) -> `model`'s output from its ONNX export (--runtime):
                                                  ScoreOptions.predict
    """

    request: Callable[[P], type[Any]]
    table: Callable[[P, Any, Path], pd.DataFrame]
    tables: Callable[[P, list[Any], Path], pd.DataFrame] | None = None
    combine: (
        Callable[[P, pd.DataFrame, list[int], list[Any], dict[str, Any]], tuple[pd.DataFrame, ScoreOptions]] | None
    ) = None
    respond: Callable[[P, pd.DataFrame, Any, Path], list[dict[str, Any]]] | None = None
    describe: Callable[[P, Path, str], dict[str, Any]] | None = None
    # the request field every gate column is derived from (images: "image"), named in a refusal's location in
    # place of the derived column (decode_error, height, ...); None: the columns are the request's own fields
    source_field: str | None = None
    # (params, model dir, export dir, model, int8) -> ScoreOptions.predict from the verified ONNX export; None: torch only
    onnx: Callable[[P, Path, Path, str, bool], Callable[[str, Any], Any]] | None = None


@dataclass(frozen=True)
class ScoringSpec(Generic[P]):
    """How a domain scores new data with a trained model (see domains/common/scoring.py).

        read(params, input, source)            -> the table the gate checks (labels optional)
        read_chunks(params, input, source, rows) -> the same table in pieces of at most `rows` rows, in
                                                  input order (optional: without it a batch is read whole)
        gate_suite(params)                     -> the training suite minus its label checks
        reference(params, prepared, trained)   -> Reference (at training time, saved with the model)
        score(params, trained, model, table, options) -> Scored

    `params` are the ones the model was trained with (saved next to it), so features match. A batch read in
    chunks is gated and scored chunk by chunk; `score` gets `options.chunked` and the previous chunk's
    `Scored.carry` (whatever the domain needs from earlier rows), and the last chunk's `shadow_metrics` and
    `notes` stand for the whole batch, so a chunked domain carries what they add up.
    """

    sources: tuple[str, ...]  # input formats; the training source's format is the default
    read: Callable[[P, Path, str], pd.DataFrame]
    gate_suite: Callable[[P], GateSuite]
    reference: Callable[[P, Path, Path], Reference]
    score: Callable[[P, Path, str, pd.DataFrame, ScoreOptions], Scored]
    id_column: str = "item_id"
    read_chunks: Callable[[P, Path, str, int], Iterator[pd.DataFrame]] | None = None
    default_source: str | None = None  # None: the training source's format when scoring reads it, else sources[0]
    serving: ServingSpec[P] | None = None  # None: no HTTP endpoint for this domain yet


@dataclass(frozen=True)
class DomainSpec(Generic[P]):
    name: str
    title: str
    params_model: type[P]
    sources: tuple[str, ...]  # accepted values of <domain>.data.source
    metric: MetricContract
    acquire: Callable[[P, Path], pd.DataFrame]
    gate_suite: Callable[[P], GateSuite]
    prepare: Callable[[P, pd.DataFrame, Path, Path], None]
    train: Callable[[P, Path, Path, TrainEnv], None]
    evaluate: Callable[[P, Path, Path, Path], Evaluation]
    scoring: ScoringSpec[P] | None = None  # None: the domain cannot score new data yet
    # (params, trained model dir, prepared dir) -> domains.common.export.Exportable; None: no `aiflow export` yet
    export: Callable[[P, Path, Path], Any] | None = None
    # what `evaluate.slices` may cut on: column -> what it is (the predictions' `slice:<column>`)
    slice_columns: dict[str, str] = field(default_factory=dict)
    slice_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column -> the only sources that have it
