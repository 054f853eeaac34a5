"""A trained model outside Python (`aiflow export`): ONNX files, proven equal to the evaluated model.

resolve the model (champion, candidate or v<N>) and materialise it verified by its DVC hash ->
materialise the prepared split it was trained and evaluated on (its hash is in the dvc.lock that
trained it) -> the domain converts each model and scores the whole test split with the model as
evaluate scored it -> onnxruntime scores the same items from the .onnx -> parity: max |p_onnx -
p_ref| within the tolerance of the model's kind, decisions identical except items within that
tolerance of the threshold -> optional int8 (onnxruntime quantization), kept only when the primary
metric moves by at most one point -> files and manifest written under a temporary name and renamed.
An export outside its bounds writes nothing and names the model and the largest difference.
Anomaly models (defects) also output per-item maps, compared within TOLERANCES["map"], and decide at
their own thresholds (Convertible.threshold). Their image score is the maximum of the box-filtered map, so
it can differ by no more than the map does: it is held to the map's tolerance, with identical decisions.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from domains.common import modelstore, paths, provenance
from domains.common.champion import read_registry
from domains.common.errors import PipelineError
from domains.common.registry import load_params, load_spec

# Parity bounds on P(positive), by what computes it. torch and linear models run float32 in both
# runtimes (linear: sklearn float64 vs ONNX float32 differ by ~1e-7); trees compare float32 inputs
# with thresholds rounded to float32 in ONNX, and sum hundreds of leaves (sklearn #1051, #1192).
TOLERANCES = {"torch": 1e-5, "linear": 1e-5, "tree": 1e-4, "map": 1e-4}  # map: anomaly maps (issue 16)
METRIC_POINT = 0.01  # "within 1 point" of AUROC or accuracy
FLOAT16_MIN_VALUES = 4096  # int8 files keep float32 constants of at least this many values in float16
OPSET = 18
ML_OPSET = 3  # ai.onnx.ml, for skl2onnx's tree ensembles
MANIFEST = "manifest.json"
PREPROCESSING = "preprocessing.json"
PACKAGES = ("onnx", "onnxruntime", "skl2onnx", "onnxscript", "torch", "scikit-learn")  # recorded in the manifest
CHUNK = 4096  # items per onnxruntime call on the test split: bounded memory for padded text inputs


@dataclass
class Convertible:
    """One converted model and what its parity is measured on."""

    name: str
    kind: str  # torch | linear | tree: picks the tolerance
    convert: Callable[[], bytes]  # -> the serialised ModelProto; called in turn, so a parity failure stops early
    test: dict[str, Any]  # the graph's inputs for every test item (first axis: items; numpy or scipy sparse)
    reference: np.ndarray  # P(positive) of the model as evaluate ran it, same items
    output: str  # the graph output holding probabilities
    column: int | None = None  # that output's positive-class column (None: it is P(positive) itself)
    quantize: str | None = None  # dynamic | static (calibrated) | None: no int8 version
    calibration: dict[str, np.ndarray] | None = None  # training items, for static quantization
    threshold: float | None = None  # this model's own decision threshold (None: Exportable.threshold)
    map_output: str | None = None  # a graph output of per-item maps, compared within TOLERANCES["map"]
    map_reference: np.ndarray | None = None  # those maps as the evaluated model computed them, same items
    chunk: int = CHUNK  # items per onnxruntime call on the test split (images: fewer)
    top_k: int | None = None  # a recommender: decisions are each item's (user's) k best unseen output columns
    seen: np.ndarray | None = None  # with top_k: bool [items, columns], the columns never recommended (rated)
    # Per item, what one unit of the output is worth in the model's own probabilities (a defects model per
    # category divides each category's by its threshold): differences are compared after multiplying by it.
    units: np.ndarray | None = None
    quantize_ops: tuple[str, ...] | None = None  # static int8: only these op types (None: onnxruntime's choice)
    # static int8: the convolutions that read the input (no convolution before them) stay float32. They see raw
    # pixel values, where int8's steps are coarsest, and hold a few hundred weights.
    float_first_convs: bool = False


@dataclass
class Exportable:
    """What a domain's export function returns (see DomainSpec.export)."""

    models: list[Convertible]
    labels: np.ndarray  # the test items' 0/1 labels, for the int8 metric check
    threshold: float | None  # P(positive) >= threshold decides the positive class (None: ranked, see top_k)
    class_names: list[str]  # [negative, positive]
    metric: str  # auroc | accuracy: the primary metric int8 must keep within one point
    preprocessing: dict[str, Any]  # what the graphs do not contain, documented
    not_converted: dict[str, str] = field(default_factory=dict)  # model -> why, one line each
    files: dict[str, bytes] = field(default_factory=dict)  # extra files the preprocessing refers to


@dataclass(frozen=True)
class ExportRequest:
    domain: str
    model: str = "champion"  # champion | candidate | v<N>
    int8: bool = False
    out: Path | None = None  # default: data/<domain>/exports/<version>
    tolerances: dict[str, float] | None = None  # overrides of TOLERANCES (tests prove the failure path with 0)


def export(root: Path, request: ExportRequest) -> dict[str, Any]:
    """Export one model version; return its manifest. A one-line PipelineError on anything that stops it."""
    spec = load_spec(request.domain)
    if spec.export is None:
        raise PipelineError(f"{spec.name}: export is not available for this domain yet")
    params = load_params(root, spec.name)
    ref = modelstore.resolve(root, spec.name, request.model, params.evaluate.candidate)
    tolerances = {**TOLERANCES, **(request.tolerances or {})}
    out = (request.out or paths.stage_dir(root, spec.name, "exports") / ref.version).resolve()
    with (
        tempfile.TemporaryDirectory(prefix=".aiflow-model-") as model_tmp,
        tempfile.TemporaryDirectory(prefix=".aiflow-prepared-") as prepared_tmp,
        tempfile.TemporaryDirectory(prefix=".aiflow-export-") as work_tmp,
    ):
        model_dir, prepared_dir, staging = Path(model_tmp), Path(prepared_tmp), Path(work_tmp)
        modelstore.materialise(root, ref, model_dir)
        modelstore.materialise(
            root, modelstore.ModelRef(spec.name, ref.version, "prepared split", _prepared_md5(root, ref)), prepared_dir
        )
        from domains.common.scoring import _trained_params  # the params the model was trained with

        trained = _trained_params(spec, params, model_dir)
        exportable: Exportable = spec.export(trained, model_dir, prepared_dir)
        models = convert_all(exportable, staging, tolerances, request.int8, f"{spec.name} {ref.version}")
        manifest = {
            "domain": spec.name,
            "model": {
                "version": ref.version,
                "scoring_model": ref.model,
                "dvc_md5": ref.md5,
                "metrics": _metrics(root, spec.name, ref),
            },
            "git_commit": provenance.git_commit(root),
            "opset": {"ai.onnx": OPSET, "ai.onnx.ml": ML_OPSET},
            "packages": {p: metadata.version(p) for p in PACKAGES},
            "threshold": exportable.threshold,
            "class_names": exportable.class_names,
            "test_items": int(len(exportable.labels)),
            "primary_metric": exportable.metric,
            "preprocessing": PREPROCESSING,
            "models": models,
            "not_converted": exportable.not_converted,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        _publish(staging, out)
    manifest["out"] = str(out)
    return manifest


def convert_all(
    exportable: Exportable, folder: Path, tolerances: dict[str, float], with_int8: bool, label: str
) -> dict[str, Any]:
    """Convert, prove parity and (optionally) quantize each model into `folder`, with the preprocessing
    files; each model's figures. The first model outside its bound raises (`label` names the version)."""
    models: dict[str, Any] = {}
    for model in exportable.models:
        file = folder / f"{model.name}.onnx"
        file.write_bytes(model.convert())
        session = _session(file)
        threshold = exportable.threshold if model.threshold is None else model.threshold
        tolerance = tolerances["map"] if model.map_output else tolerances[model.kind]  # see the module's doc
        figures = parity(model, session, threshold, tolerance, tolerances["map"])
        if "map" in figures and not figures["map"]["passed"]:
            raise PipelineError(
                f"{label} {model.name}: ONNX export outside parity bounds: max |map_onnx - map_ref| = "
                f"{figures['map']['max_abs_diff']:.3g} (tolerance {figures['map']['tolerance']:g}); nothing written"
            )
        if not figures["passed"]:
            raise PipelineError(
                f"{label} {model.name}: ONNX export outside parity bounds: max |p_onnx - p_ref| = "
                f"{figures['max_abs_diff']:.3g} (tolerance {figures['tolerance']:g}), {figures['decisions_differ']} "
                f"decision(s) differ away from the threshold; nothing written"
            )
        models[model.name] = {
            "file": file.name,
            "kind": model.kind,
            "inputs": list(model.test),
            "output": model.output,
            "column": model.column,
            "parity": figures,
        }
        if model.threshold is not None:
            models[model.name]["threshold"] = model.threshold
        if model.map_output:
            models[model.name]["map_output"] = model.map_output
        if with_int8 and model.quantize:
            models[model.name]["int8"] = int8(model, file, session, exportable)
        elif with_int8:
            why = "recommender scores: lookups and one product, nothing int8 speeds up" if model.top_k else ""
            models[model.name]["int8"] = {
                "exported": False,
                "reason": why or f"no int8 version for {model.kind} models",
            }
    for name, content in exportable.files.items():
        (folder / name).write_bytes(content)
    (folder / PREPROCESSING).write_text(json.dumps(exportable.preprocessing, indent=2))
    return models


def _publish(files: Path, out: Path) -> None:
    """Copy the finished export next to `out` under a temporary name, then rename it into place: `out` is
    either the old export or the whole new one, never a part (nothing at all is created before this)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        staging = Path(tmp) / out.name
        shutil.copytree(files, staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)


def parity(
    model: Convertible,
    session: Any,
    threshold: float | None,
    tolerance: float,
    map_tolerance: float = TOLERANCES["map"],
) -> dict[str, Any]:
    """ONNX against the evaluated model on every test item: largest difference and decisions (and, for a
    model with a map output, the largest difference of any map value, under "map")."""
    p, map_figures = _predict_with_maps(session, model, map_tolerance)
    ref = np.asarray(model.reference, dtype=np.float64)
    if model.top_k is not None:
        return _top_k_parity(p, ref, model.seen, model.top_k, tolerance)
    assert threshold is not None, f"{model.name}: a model decided by a threshold needs one"
    unit = np.ones(len(ref)) if model.units is None else np.asarray(model.units, dtype=np.float64)
    diff = np.abs(p - ref) * unit
    near = np.abs(ref - threshold) * unit <= tolerance  # a difference within tolerance may flip these: allowed
    flipped = (p >= threshold) != (ref >= threshold)
    differ = int((flipped & ~near).sum())
    max_diff = float(diff.max()) if len(diff) else 0.0
    return (
        {
            "items": int(len(ref)),
            "max_abs_diff": max_diff,
            "mean_abs_diff": float(diff.mean()) if len(diff) else 0.0,
            "tolerance": tolerance,
            "near_threshold": int(near.sum()),
            "near_threshold_flipped": int((flipped & near).sum()),
            "decisions_differ": differ,
            "passed": bool(max_diff <= tolerance and differ == 0),
        }
        | ({"map": map_figures} if map_figures else {})
        | ({"in_model_units": True} if model.units is not None else {})
    )


def _top_k_parity(p: np.ndarray, ref: np.ndarray, seen: np.ndarray | None, k: int, tolerance: float) -> dict:
    """A recommender decides by rank: each user's k best unseen columns from the ONNX scores against the
    model's. Its scores are not probabilities (item-kNN sums similarities to tens), and float32 sums in
    another order differ in proportion: the tolerance is relative to the largest |score| (at least 1). A
    list may differ only where the model's k-th and next scores are within twice that (each may move by
    it): those users are counted, any other difference fails."""
    diff = np.abs(p - ref)
    finite = np.abs(ref[np.isfinite(ref)])
    scale = max(1.0, float(finite.max()) if finite.size else 1.0)
    allowed = tolerance * scale

    def masked(scores: np.ndarray) -> np.ndarray:
        return np.where(seen, -np.inf, scores) if seen is not None else scores

    order = np.argsort(-masked(ref), axis=1, kind="stable")
    onnx_top = np.sort(np.argsort(-masked(p), axis=1, kind="stable")[:, :k], axis=1)
    differs = (np.sort(order[:, :k], axis=1) != onnx_top).any(axis=1)
    ranked = np.take_along_axis(masked(ref), order[:, : k + 1], axis=1)
    near = ranked[:, -1] >= ranked[:, k - 1] - 2 * allowed if ranked.shape[1] > k else np.zeros(len(p), bool)
    max_diff = float(diff.max()) if diff.size else 0.0
    return {
        "items": int(len(ref)),
        "max_abs_diff": max_diff,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "tolerance": allowed,
        "relative_tolerance": tolerance,
        "score_scale": scale,  # the largest |score|, at least 1: tolerance = relative_tolerance x this
        "top_k": k,
        "near_threshold": int(near.sum()),  # users whose k-th and next scores tie within the tolerance
        "near_threshold_flipped": int((differs & near).sum()),
        "decisions_differ": int((differs & ~near).sum()),  # users whose top-k lists differ away from a tie
        "passed": bool(max_diff <= allowed and not (differs & ~near).any()),
    }


def _predict_with_maps(session: Any, model: Convertible, tolerance: float) -> tuple[np.ndarray, dict[str, Any]]:
    """predict, and each chunk's maps compared with the reference's as they come (bounded memory)."""
    if not model.map_output or model.map_reference is None:
        return predict(session, model, model.test), {}
    n = next(iter(model.test.values())).shape[0]
    outs, largest, total, values = [], 0.0, 0.0, 0
    for start in range(0, n, model.chunk):
        out, maps = session.run([model.output, model.map_output], _rows(model.test, start, start + model.chunk))
        outs.append(out if model.column is None else out[:, model.column])
        diff = np.abs(maps.astype(np.float64) - model.map_reference[start : start + model.chunk])
        if model.units is not None:
            diff *= model.units[start : start + model.chunk, None, None]
        largest, total, values = max(largest, float(diff.max())), total + float(diff.sum()), values + diff.size
    figures = {
        "output": model.map_output,
        "max_abs_diff": largest,
        "mean_abs_diff": total / values if values else 0.0,
        "tolerance": tolerance,
        "passed": bool(largest <= tolerance),
    }
    return (np.concatenate(outs).astype(np.float64) if outs else np.empty(0)), figures


def predict(session: Any, model: Convertible, feed: dict[str, np.ndarray]) -> np.ndarray:
    """P(positive) from an onnxruntime session, in chunks of items."""
    n = next(iter(feed.values())).shape[0]
    outs = []
    for start in range(0, n, model.chunk):
        (out,) = session.run([model.output], _rows(feed, start, start + model.chunk))
        outs.append(out if model.column is None else out[:, model.column])
    return np.concatenate(outs).astype(np.float64) if outs else np.empty(0)


def int8(model: Convertible, f32_file: Path, f32_session: Any, exportable: Exportable) -> dict[str, Any]:
    """Quantize, then size, metric change on the test split and latency at batch 1 and 64, against float32.
    The int8 file stays only when the metric moved by at most one point."""
    from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    file = f32_file.with_name(f"{model.name}.int8.onnx")
    with _quiet():
        if model.quantize == "static":
            # onnxruntime's recommended pre-processing: batch norms folded into their convolutions (the int8
            # weights then carry them) and shapes inferred.
            prepared = f32_file.with_name(f"{model.name}.prepared.onnx")
            quant_pre_process(str(f32_file), str(prepared), skip_symbolic_shape=True)
            keep_float = first_convolutions(prepared) if model.float_first_convs else []
            quantize_static(
                prepared,
                file,
                _Calibration(model.calibration or {}),
                quant_format=_qdq(),
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                op_types_to_quantize=list(model.quantize_ops) if model.quantize_ops else None,
                nodes_to_exclude=keep_float,
            )
            prepared.unlink()
        else:
            quantize_dynamic(f32_file, file, weight_type=QuantType.QInt8)
        in_float16 = float16_constants(file)
    session = _session(file)
    threshold = exportable.threshold if model.threshold is None else model.threshold
    assert threshold is not None, f"{model.name}: int8 is judged at a decision threshold"
    metric = _metric_fn(exportable.metric, threshold)
    f32_metric = metric(exportable.labels, predict(f32_session, model, model.test))
    q_metric = metric(exportable.labels, predict(session, model, model.test))
    change = q_metric - f32_metric
    figures: dict[str, Any] = {
        "method": "static QDQ, calibrated on training items"
        + (f", {' and '.join(model.quantize_ops)} only" if model.quantize_ops else "")
        + (", the input's convolutions in float32" if model.float_first_convs else "")
        if model.quantize == "static"
        else "dynamic (weights int8)",
        "float16_constants": in_float16,  # float32 constants int8 left, stored in float16 (FLOAT16_MIN_VALUES)
        "size_ratio": file.stat().st_size / f32_file.stat().st_size,
        "size_bytes": {"float32": f32_file.stat().st_size, "int8": file.stat().st_size},
        # the weights alone (initializers): a small model's file is mostly graph, which int8 does not shrink
        "weight_bytes": {"float32": _weight_bytes(f32_file), "int8": _weight_bytes(file)},
        "metric": exportable.metric,
        "float32": f32_metric,
        "int8": q_metric,
        "change_points": change * 100,
        "latency_ms": {
            f"batch_{b}": {"float32": latency(f32_session, model, b), "int8": latency(session, model, b)}
            for b in (1, 64)
        },
    }
    figures["weight_ratio"] = figures["weight_bytes"]["int8"] / max(figures["weight_bytes"]["float32"], 1)
    batch_1 = figures["latency_ms"]["batch_1"]
    figures["speedup_batch_1"] = batch_1["float32"] / batch_1["int8"]
    figures["goals"] = {
        "size_ratio <= 0.30": figures["size_ratio"] <= 0.30,  # issue 16's goals, recorded, not enforced
        "speedup_batch_1 >= 1.5": figures["speedup_batch_1"] >= 1.5,
        "metric within 1 point": abs(change) <= METRIC_POINT,
    }
    figures["exported"] = abs(change) <= METRIC_POINT
    if figures["exported"]:
        figures["file"] = file.name
    else:
        file.unlink()
        figures["reason"] = (
            f"int8 {exportable.metric} moved by {change * 100:+.2f} points (bound: 1): exported in float32 only"
        )
    return figures


def first_convolutions(file: Path) -> list[str]:
    """Names of the Conv nodes with no Conv upstream of them: those that read the graph's input."""
    import onnx

    after_conv: set[str] = set()  # tensors computed from some convolution's output
    first = []
    for node in onnx.load(str(file)).graph.node:  # ONNX stores nodes in topological order
        upstream = any(name in after_conv for name in node.input)
        if node.op_type == "Conv" and not upstream:
            first.append(node.name)
        if node.op_type == "Conv" or upstream:
            after_conv.update(node.output)
    return first


def float16_constants(file: Path, min_values: int = FLOAT16_MIN_VALUES) -> list[str]:
    """Store the large float32 constants that int8 leaves as they were (a route's thumbnails) in float16, each
    cast back to float32 by a Cast node that onnxruntime folds when it loads the graph: no cost per call.
    Returns their names; a constant beyond float16's range stays float32."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(file))
    graph = model.graph
    quantizer_inputs = {
        name for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear") for name in node.input
    }
    casts = []
    for tensor in graph.initializer:
        values = numpy_helper.to_array(tensor)
        if (
            tensor.data_type != onnx.TensorProto.FLOAT
            or values.size < min_values
            or tensor.name in quantizer_inputs
            or np.abs(values).max() > np.finfo(np.float16).max
        ):
            continue
        name = tensor.name
        tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float16), f"{name}_float16"))
        casts.append(
            helper.make_node("Cast", [f"{name}_float16"], [name], f"{name}_to_float32", to=onnx.TensorProto.FLOAT)
        )
    if casts:
        nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend(casts + nodes)  # ahead of every reader: the order stays topological
        onnx.save(model, str(file))
    return [cast.output[0] for cast in casts]


def _weight_bytes(file: Path) -> int:
    """Bytes of a graph's initializers (weights, biases, scales, zero points, constants)."""
    import onnx
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(file)).graph.initializer)


def latency(session: Any, model: Convertible, batch: int, seconds: float = 0.3) -> float:
    """Median milliseconds of one call on `batch` test items (repeated up to `seconds` or 500 calls)."""
    feed = _rows(model.test, 0, batch)
    for _ in range(3):  # warm-up: first calls allocate
        session.run([model.output], feed)
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and len(times) < 500:
        began = time.perf_counter()
        session.run([model.output], feed)
        times.append(time.perf_counter() - began)
    return float(np.median(times) * 1000)


def _rows(feed: dict[str, Any], start: int, stop: int) -> dict[str, np.ndarray]:
    """Items start..stop of every input, dense (sparse counts are densified a chunk at a time)."""
    return {k: (v[start:stop].toarray() if hasattr(v, "toarray") else v[start:stop]) for k, v in feed.items()}


@contextlib.contextmanager
def _quiet():
    """The exporter and the quantizer print progress, advice and torchvision notes: none of it is the user's."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over training items, a batch at a time."""

    def __init__(self, feed: dict[str, np.ndarray], batch: int = 32):
        n = next(iter(feed.values())).shape[0] if feed else 0
        self.batches = iter([{k: v[s : s + batch] for k, v in feed.items()} for s in range(0, n, batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def _qdq() -> Any:
    from onnxruntime.quantization import QuantFormat

    return QuantFormat.QDQ  # QDQ runs on the CPU provider; dynamic's ConvInteger does not (onnxruntime #12558)


def _metric_fn(name: str, threshold: float) -> Callable[[np.ndarray, np.ndarray], float]:
    if name == "auroc":
        from sklearn.metrics import roc_auc_score

        return lambda y, p: float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    return lambda y, p: float(np.mean((p >= threshold) == (y == 1)))


def _session(file: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = (
        3  # errors only: skl2onnx declares some outputs [1, n], which onnxruntime notes per call
    )
    return ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])


def _prepared_md5(root: Path, ref: modelstore.ModelRef) -> str:
    """The prepared split the model was trained and evaluated on: the prepare dependency of the train
    stage whose output is this model, in dvc.lock or, for an older model, in a committed dvc.lock."""
    for text in _lock_versions(root):
        stage = ((yaml.safe_load(text) or {}).get("stages") or {}).get(f"train@{ref.domain}") or {}
        if any(out.get("md5") == ref.md5 for out in stage.get("outs", [])):
            for dep in stage.get("deps", []):
                if dep.get("path") == f"data/{ref.domain}/prepare" and dep.get("md5"):
                    return dep["md5"]
    raise PipelineError(
        f"{ref.domain} {ref.version}: no dvc.lock (current or committed) names the prepared data model "
        f"{ref.md5} was trained on, so its test split is unknown: export it where it was trained"
    )


def _lock_versions(root: Path):
    """dvc.lock as it is, then as each commit had it (newest first), read lazily."""
    lock = root / "dvc.lock"
    if lock.is_file():
        yield lock.read_text()
    try:
        commits = subprocess.run(
            ["git", "log", "--format=%H", "--", "dvc.lock"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return
    for commit in commits:
        shown = subprocess.run(["git", "show", f"{commit}:dvc.lock"], cwd=root, capture_output=True, text=True)
        if shown.returncode == 0:
            yield shown.stdout


def _metrics(root: Path, domain: str, ref: modelstore.ModelRef) -> dict[str, Any]:
    """The metrics recorded when the model was promoted (the evaluation's, for a candidate)."""
    if ref.version == "candidate":
        decision = paths.decision_file(root, domain)
        return json.loads(decision.read_text()).get("metrics", {}) if decision.is_file() else {}
    for event in read_registry(root, domain)["events"]:
        if event["event"] == "promote" and f"v{event['version']}" == ref.version:
            return event.get("metrics", {})
    return {}


def image_layout(side: int, channels: int) -> dict[str, Any]:
    """preprocessing.json's "image": what an image model's graph expects its pixels to have been through."""
    return {
        "size": [side, side],
        "channels": channels,
        "layout": "NCHW",
        "resize": "each image to image_size x image_size with PIL bilinear resampling (antialiased, "
        "reducing_gap=None), converted to grey or RGB as trained, as prepare and scoring do "
        "(domains/common/images.py:to_size, domains/common/image_scoring.py:model_inputs)",
    }


# Converters the domains call.


def from_sklearn(estimator: Any, n_features: int) -> bytes:
    """A fitted scikit-learn estimator (or pipeline) as ONNX: float32 input `x` [items, n_features], outputs
    `label` and `probabilities` [items, classes]."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common import tree_ensemble
    from skl2onnx.common.data_types import FloatTensorType

    # Two fixes to skl2onnx 1.20's tree nodes. (1) Leaves get a Python False among numpy ints in
    # nodes_missing_value_tracks_true, which protobuf 7 refuses ("Expected an int, got a boolean"): the same
    # value, as an int. (2) scikit-learn compares a float32 feature, widened, with a float64 threshold; ONNX
    # compares float32 with the threshold rounded to nearest, so features between the two go the other way
    # (0.03 apart on pixel features, sklearn-onnx #1051): skl2onnx's own sklearn_threshold gives the float32
    # threshold that splits every float32 alike, which its HistGradientBoosting converter does not ask for.
    original = tree_ensemble.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        kwargs.update(adjust_threshold_for_sklearn=True, dtype=np.float32)
        return original(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    tree_ensemble.add_node = add_node
    try:
        onx = convert_sklearn(
            estimator,
            initial_types=[("x", FloatTensorType([None, n_features]))],
            options={id(final): {"zipmap": False}},  # a plain tensor, not a list of dicts
            target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
        )
    finally:
        tree_ensemble.add_node = original
    return onx.SerializeToString()


def from_torch(
    module: Any,
    example: tuple[Any, ...],
    input_names: list[str],
    output_names: list[str],
    dynamic: dict[str, dict[int, str]],
) -> bytes:
    """A torch module as ONNX through torch.onnx.export (dynamo), with the named dynamic axes."""
    import torch

    dims = {label: torch.export.Dim(label) for axes in dynamic.values() for label in axes.values()}  # shared by name
    shapes = {name: {axis: dims[label] for axis, label in axes.items()} for name, axes in dynamic.items()}
    module.eval()
    with _quiet():
        program = torch.onnx.export(
            module,
            example,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=shapes,
            dynamo=True,
            opset_version=OPSET,
            external_data=False,
        )
    assert program is not None  # the dynamo exporter always returns its program
    proto = program.model_proto
    # The exporter annotates every node and value with its Python stack trace (this machine's file paths):
    # debugging aids, a third of a small model's bytes, and nothing a runtime reads.
    for item in [
        *proto.graph.node,
        *proto.graph.value_info,
        *proto.graph.input,
        *proto.graph.output,
        *proto.graph.initializer,
    ]:
        del item.metadata_props[:]
    for node in proto.graph.node:
        node.doc_string = ""
    return proto.SerializeToString()
