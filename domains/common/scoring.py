"""Batch scoring with a trained model (`aiflow score`), the same for every domain.

read the input (the domain's formats, labels optional) -> the data gate (the training suite minus
label checks, the same severities) -> the domain's features and scores -> the drift gate against
the profile saved with the model -> predictions, manifest and report, written under a temporary
name and renamed into place. A batch that the gate or the drift check blocks writes nothing; the
input is only ever read. The model is found by its DVC hash and verified before it loads
(domains/common/modelstore.py); its own training params make the features, so a model scores as
it was evaluated whatever params.yaml says today.

A batch is read, gated, scored and written in chunks of `score.chunk_rows` rows (`--chunk-rows`;
0: whole) where the domain reads its format in pieces (`ScoringSpec.read_chunks`: fraud's tables,
sentiment's CSV, text folders and aclImdb reviews); image folders and recsys user lists are read whole. A whole batch is one chunk through
the same steps. Per chunk: the gate (a chunk that blocks blocks the batch, its reasons naming the
chunk's rows; ids repeated across chunks are caught, see domains/common/chunks.py for what per-chunk
gating does not see), the domain's score (handed what the previous chunk left it), the drift
counts (domains.common.drift.Accumulator) and the output rows. The quarantined share and the drift
verdict are judged over the whole batch before the staging folder is renamed into place; the report
keeps the first rows and a bounded sample of scores. Memory follows the chunk, not the batch.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.common import drift, modelstore, paths, provenance
from domains.common.chunks import ChunkGate, PredictionWriter, rows_label
from domains.common.contract import DomainSpec, ScoreOptions, ScoringSpec
from domains.common.errors import DataError, GateBlocked, ParamsError, PipelineError
from domains.common.gate import GateResult, check_names, quarantine_reason, render_gate_html
from domains.common.params import DomainParams
from domains.common.registry import load_params, load_spec

PREDICTIONS = "predictions"  # .parquet, or .csv on request
MANIFEST = "manifest.json"
REPORT = "report.html"
MAPS = "maps"  # per-item images a domain writes (anomaly maps, Grad-CAM)
EXAMPLES = 20  # output rows the report shows
TRAINED_SECTIONS = ("seed", "data", "prepare", "train")  # what shapes a trained model's features


@dataclass(frozen=True)
class ScoreRequest:
    domain: str
    input: Path
    source: str | None = None  # default: the training source's format
    out: Path | None = None  # default: data/<domain>/scores/<input name>
    model: str = "champion"  # champion | candidate | v<N>
    csv: bool = False
    options: ScoreOptions = ScoreOptions()
    chunk_rows: int | None = None  # None: params' score.chunk_rows; 0: the whole batch at once


def save_reference(spec: DomainSpec, params: DomainParams, prepared_dir: Path, train_dir: Path) -> None:
    """At the end of training: the params the model was trained with and its drift profile, next to it."""
    scoring = _scoring(spec)
    trained = params.model_dump(mode="json")
    (train_dir / modelstore.TRAINED_PARAMS).write_text(
        json.dumps({k: trained[k] for k in TRAINED_SECTIONS if k in trained}, indent=2, sort_keys=True)
    )
    reference = scoring.reference(params, prepared_dir, train_dir)
    profile = drift.build_profile(reference.frame, reference.scores, params.seed)
    (train_dir / modelstore.PROFILE).write_text(json.dumps(profile, sort_keys=True))


def _scoring(spec: DomainSpec) -> ScoringSpec:
    if spec.scoring is None:
        raise PipelineError(f"{spec.name}: scoring new data is not available for this domain yet")
    return spec.scoring


def score(root: Path, request: ScoreRequest) -> dict[str, Any]:
    """Score one batch; return its manifest. Raises a one-line PipelineError on anything the user can fix."""
    began = time.perf_counter()
    spec = load_spec(request.domain)
    scoring = _scoring(spec)
    params = load_params(root, request.domain)
    source = (
        request.source
        or scoring.default_source
        or (params.data.source if params.data.source in scoring.sources else scoring.sources[0])
    )
    if source not in scoring.sources:
        raise ParamsError(
            f"--source: unknown source '{source}' for {spec.name}; accepted: {', '.join(scoring.sources)}"
        )
    input_path = request.input.resolve()
    if not input_path.exists():
        raise DataError(f"{request.input}: not found")
    out = (request.out or paths.scores_dir(root, spec.name) / input_path.name.split(".")[0]).resolve()
    if out == input_path or input_path in out.parents or out in input_path.parents:
        raise PipelineError(f"--out {out}: would overwrite or sit inside the input {input_path}; choose another folder")
    ref = modelstore.resolve(root, spec.name, request.model, params.evaluate.candidate)

    chunk_rows = params.score.chunk_rows if request.chunk_rows is None else request.chunk_rows
    if chunk_rows < 0:
        raise ParamsError(f"--chunk-rows: expected 0 (whole batch) or more rows, got {chunk_rows}")
    chunk_rows = chunk_rows if scoring.read_chunks is not None else 0  # the domain reads this format only whole
    timings = dict.fromkeys(("model", "read", "gate", "score", "drift", "write"), 0.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=".aiflow-model-") as model_tmp,
        tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as staging_tmp,
    ):
        model_dir, staging = Path(model_tmp), Path(staging_tmp)
        with _timed(timings, "model"):
            modelstore.materialise(root, ref, model_dir)
            trained = _trained_params(spec, params, model_dir)
            profile = json.loads((model_dir / modelstore.PROFILE).read_text())

        with _timed(timings, "read"):
            input_hash = content_hash(input_path)
        suite = scoring.gate_suite(trained)
        known = set(check_names(suite))
        gate_params = params.gate.model_copy(
            update={"severity": {k: v for k, v in params.gate.severity.items() if k in known}}
        )
        gate = ChunkGate(suite, gate_params, scoring.id_column, bool(chunk_rows), f"{spec.name} batch {request.input}")
        reference_scores = profile.get("scores", {}).get(ref.model)
        batch_drift = drift.Accumulator(
            {"columns": {**profile["columns"], **({drift.SCORE_COLUMN: reference_scores} if reference_scores else {})}}
        )
        file = staging / (f"{PREDICTIONS}.csv" if request.csv else f"{PREDICTIONS}.parquet")
        writer = PredictionWriter(file, request.csv)
        options = replace(request.options, maps_dir=staging / MAPS, chunked=bool(chunk_rows))
        counts: dict[str, Any] = {"rows_in": 0, "scored": 0, "quarantined": 0, "chunks": 0}
        decided: dict[str, Counter[str]] = {}  # decisions or classes, summed over chunks
        examples = pd.DataFrame()
        scored = None
        chunks = _chunks(scoring, trained, input_path, source, chunk_rows)
        while True:
            with _timed(timings, "read"):
                table = next(chunks, None)
            if table is None:
                break
            with _timed(timings, "gate"):
                kept, quarantine = gate.check(table, rows_label(table.index) if chunk_rows else "")
            predictions = pd.DataFrame()
            if len(kept):
                with _timed(timings, "score"):
                    scored = scoring.score(trained, model_dir, ref.model, kept, options)
                    options = replace(options, carry=scored.carry)
                with _timed(timings, "drift"):
                    batch_drift.add(scored.drift, scored.scores)
                predictions = scored.predictions
                for key, values in _label_counts(predictions).items():
                    decided.setdefault(key, Counter()).update(values)
            with _timed(timings, "write"):
                if len(kept):  # the types of scored rows: a chunk with quarantined rows writes them too
                    writer.types(_with_provenance(predictions[:0], quarantine[:0], scoring.id_column, ref, input_hash))
                output = _with_provenance(predictions, quarantine, scoring.id_column, ref, input_hash)
                writer.write(output)
            if len(examples) < EXAMPLES:
                examples = pd.concat([examples, output.head(EXAMPLES - len(examples))], ignore_index=True)
            counts["rows_in"] += len(table)
            counts["scored"] += len(kept)
            counts["quarantined"] += len(quarantine)
            counts["chunks"] += 1
        if not counts["rows_in"]:
            raise DataError(f"{request.input}: no rows to score")
        held = quarantine_reason(counts["quarantined"], counts["rows_in"], params.gate.max_quarantine_fraction)
        if held:
            raise GateBlocked([f"gate blocked the {spec.name} batch {request.input}: {held}; no scores written"])

        d = params.score.drift
        drift_result = batch_drift.result(d.psi_warn, d.psi_block, d.min_rows)
        if drift_result.verdict == "block":
            raise GateBlocked(
                [
                    f"drift blocked the {spec.name} batch {request.input}: the data no longer looks like "
                    f"what {ref.version} learned from; no scores written",
                    *(f"  {r}" for r in drift_result.reasons),
                ]
            )

        with _timed(timings, "write"):
            writer.close()
        timings["total"] = time.perf_counter() - began
        gate_result = gate.result()
        manifest = {
            "domain": spec.name,
            "input": str(input_path),
            "input_sha256": input_hash,
            "source": source,
            "model": {"version": ref.version, "name": ref.model, "dvc_md5": ref.md5},
            "git_commit": provenance.git_commit(root),
            "params": {
                "score": {**params.score.model_dump(mode="json"), "chunk_rows": chunk_rows},
                "gate": params.gate.model_dump(mode="json"),
                "trained": {k: getattr(trained, k) for k in ("seed",)},
            },
            "counts": {**counts, "output_rows": writer.rows, **{k: dict(v) for k, v in decided.items()}},
            "gate": {
                "verdict": gate_result.verdict,
                "reasons": gate_result.reasons,
                "warnings": [c.line() for c in gate_result.warnings],
                "info": [c.line() for c in gate_result.facts],
            },
            "drift": drift_result.to_json(),
            "shadow_metrics": scored.shadow_metrics if scored else None,  # the last chunk's: the whole batch's
            "notes": scored.notes if scored else [],
            "timings": {f"{k}_seconds": round(v, 3) for k, v in timings.items()},
            "predictions": file.name,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        (staging / REPORT).write_text(
            render_report(
                manifest, gate_result, drift_result, examples, batch_drift.score_sample(), reference_scores, staging
            )
        )
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        staging.mkdir()  # for TemporaryDirectory's clean-up
    manifest["out"] = str(out)
    return manifest


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        timings[key] += time.perf_counter() - began


def _chunks(
    scoring: ScoringSpec, params: DomainParams, path: Path, source: str, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """The batch in pieces of at most `chunk_rows` rows (0: whole), each indexed by its rows' positions in the
    input; empty pieces skipped."""
    if chunk_rows and scoring.read_chunks is not None:
        pieces: Iterator[pd.DataFrame] = scoring.read_chunks(params, path, source, chunk_rows)
    else:
        pieces = iter([scoring.read(params, path, source)])
    first = 0
    for piece in pieces:
        if len(piece):
            piece.index = pd.RangeIndex(first, first + len(piece))
            first += len(piece)
            yield piece


def _trained_params(spec: DomainSpec, params: DomainParams, model_dir: Path) -> DomainParams:
    """Today's params with the sections the model was trained with (its features depend on them)."""
    file = model_dir / modelstore.TRAINED_PARAMS
    if not file.is_file():
        raise PipelineError(
            f"{spec.name}: this model was trained before scoring existed (no {file.name}); "
            f"retrain it (`aiflow run {spec.name}`) and promote it"
        )
    return spec.params_model.model_validate({**params.model_dump(mode="json"), **json.loads(file.read_text())})


def _with_provenance(
    predictions: pd.DataFrame, quarantine: pd.DataFrame, id_column: str, ref: modelstore.ModelRef, input_hash: str
) -> pd.DataFrame:
    """Scored rows and quarantined rows (no score, the reason) in input order, each naming what made it."""
    held = pd.DataFrame(
        {
            id_column: quarantine[id_column] if id_column in quarantine else quarantine.index,
            "quarantine_reason": quarantine.get("quarantine_reason"),
        },
        index=quarantine.index,
    )
    frame = (
        pd.concat([predictions.assign(quarantine_reason=None), held]).sort_index(kind="stable")
        if len(held)
        else predictions.assign(quarantine_reason=None)
    )
    frame["quarantine_reason"] = frame["quarantine_reason"].astype("string")
    return frame.assign(model_version=ref.version, model_md5=ref.md5, input_sha256=input_hash).reset_index(drop=True)


def _label_counts(predictions: pd.DataFrame) -> dict[str, Any]:
    """How many of each decision or predicted class: the share the model flags is itself a signal."""
    for column, key in (("decision", "decisions"), ("label", "labels"), ("class", "classes")):
        if column in predictions:
            return {key: {str(k): int(v) for k, v in predictions[column].value_counts().sort_index().items()}}
    return {}


def content_hash(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative paths included, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def render_report(
    manifest: dict[str, Any],
    gate: GateResult,
    drift_result: drift.DriftResult,
    predictions: pd.DataFrame,
    scores: np.ndarray | None,
    reference_scores: dict[str, Any] | None,
    out: Path,
) -> str:
    """The scoring report: one self-contained HTML page."""
    model = manifest["model"]
    shadow = manifest["shadow_metrics"]
    parts = [
        f"<h1>{html.escape(manifest['domain'])}: scoring report</h1>",
        f"<p>Input <code>{html.escape(manifest['input'])}</code> (sha256 {manifest['input_sha256'][:16]}...), "
        f"source {html.escape(manifest['source'])}; model {model['version']} ({html.escape(model['name'])}, "
        f"DVC {model['dvc_md5']}); git {html.escape(manifest['git_commit'])}.</p>",
        "<h2>Counts</h2>" + _kv(manifest["counts"]),
        "<h2>Shadow evaluation</h2>" + (_kv(shadow) if shadow else "<p>The batch has no labels: no metrics.</p>"),
        f"<h2>Drift: {drift_result.verdict}</h2>"
        + "".join(f"<p>{html.escape(r)}</p>" for r in drift_result.reasons)
        + drift.drift_table_html(drift_result),
    ]
    if scores is not None and len(scores):
        title = (
            "Scores against the test split" if reference_scores else "Scores of this batch (no test-split reference)"
        )
        parts.append(f"<h2>{title}</h2>" + _score_figure(scores, reference_scores))
    parts.append("<h2>Data-quality gate</h2>" + render_gate_html(gate).split("</h1>", 1)[1])
    parts.append(
        "<h2>Examples</h2>"
        + _blank_missing(predictions.head(EXAMPLES)).to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4f}")
    )
    maps = sorted((out / MAPS).glob("*.png"))[:6] if (out / MAPS).is_dir() else []
    if maps:
        parts.append(
            "<h2>Maps</h2>"
            + "".join(
                f"<figure style='display:inline-block'><img src='data:image/png;base64,{base64.b64encode(m.read_bytes()).decode()}' "
                f"width='160'><figcaption>{html.escape(m.stem)}</figcaption></figure>"
                for m in maps
            )
        )
    parts.append(
        "<h2>Manifest</h2><pre>"
        + html.escape(json.dumps({k: manifest[k] for k in ("timings", "params", "notes")}, indent=2, default=str))
        + "</pre>"
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>Scoring report</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left}table{border-collapse:collapse}</style>" + "".join(parts)
    )


def _blank_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable columns' missing values as empty cells (to_html's na_rep covers NaN, not <NA>)."""
    nullable = [c for c in frame.columns if isinstance(frame[c].dtype, pd.api.extensions.ExtensionDtype)]
    return frame.astype({c: object for c in nullable}).assign(
        **{c: frame[c].astype(object).where(frame[c].notna(), "") for c in nullable}
    )


def _kv(values: dict[str, Any]) -> str:
    return (
        "<table>"
        + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_show(v))}</td></tr>" for k, v in values.items())
        + "</table>"
    )


def _show(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _score_figure(scores: np.ndarray, reference: dict[str, Any] | None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")  # laid out in one draw (bbox "tight" draws twice)
    bins = np.linspace(float(np.min(scores)), float(np.max(scores)) + 1e-9, 30)
    series = [(scores, "this batch")]
    if reference and reference["kind"] == "numeric":
        sample = np.asarray(reference["sample"])
        bins = np.linspace(min(bins[0], sample.min()), max(bins[-1], sample.max()) + 1e-9, 30)
        series.insert(0, (sample, "test split (reference)"))
    for values, label in series:  # one filled outline each: 29 bar patches each drew 3 times slower
        ax.stairs(np.histogram(values, bins=bins, density=True)[0], bins, fill=True, alpha=0.5, label=label)
    ax.set_xlabel("model score")
    ax.set_ylabel("density")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return f"<img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"
