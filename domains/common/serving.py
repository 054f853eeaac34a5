"""Scoring requests with the champion (`aiflow serve-model`), through the batch scorer's own steps.

A request body becomes the table the domain's `read` gives a file (ServingSpec.table), passes the
scoring gate's row-level checks (the same pandera suite and severities; the batch statistics of its
Great Expectations half and the drift check need a batch, not one request, and are not run here), and
is scored by the domain's own `score` with the model loaded once, by its DVC hash and verified
(modelstore). An item failing a block or quarantine check makes its request a 422 naming the item,
the field and the check; warnings do not stop it. Several requests scored together (the endpoint's
batching) are combined so that each is scored as if alone (ServingSpec.combine).

The hot path pays the gate's fixed costs once per batch: the requests' rows stay in one table from
reading to scoring (Batch), pass the checks once through rowgate.RowGate (the same checks, without
pandera's per-call bookkeeping, which cost more than scoring), and only where an item may fail does
pandera's lazy run name every failing item and check. Drift is not judged per request
(ScoreOptions.drift False): what only drift needs is not computed (medical's embedding pass).

`ModelHolder` keeps the current champion and swaps in a newly promoted one when registry/<domain>.json
changes: the new model is loaded and verified aside, then replaces the old in one assignment; batches
already running finish on the model they started with, whose files are removed after the last one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.common import modelstore, rowgate
from domains.common.champion import read_registry
from domains.common.contract import DomainSpec, ScoreOptions, ScoringSpec, ServingSpec
from domains.common.errors import PipelineError
from domains.common.gate import resolve_severities, run_pandera
from domains.common.params import DomainParams, Severity
from domains.common.registry import load_params, load_spec

RUNTIMES = ("torch", "onnx", "int8")
RETRY_SECONDS = 30.0  # a champion that failed to load (a remote down, a bad file) is tried again after this


class RequestError(Exception):
    """A request the endpoint refuses (422): one entry per problem, each naming where and why."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def error(loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    """One problem in FastAPI's validation-error shape, so every 422 reads alike."""
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


@dataclass
class Outcome:
    """One request's answer: rows to return, or the errors that refuse it."""

    rows: list[dict[str, Any]] | None = None
    errors: list[dict[str, Any]] | None = None
    internal: bool = False  # a fault of the server, not of the request (500)


@dataclass
class ServedModel:
    """A champion loaded for serving: its verified files, the params it was trained with, its gate."""

    spec: DomainSpec
    ref: modelstore.ModelRef
    params: DomainParams  # the trained params (features are made as in training)
    model_dir: Path
    severities: dict[str, Severity]
    suite: Any  # the scoring GateSuite, built once
    record: dict[str, Any]  # the registry's champion record (metrics, promotion time)
    context: dict[str, Any] = field(default_factory=dict)  # server-wide extras (fraud: the history rows)
    runtime: str = "torch"
    predict: Any = None  # ScoreOptions.predict: the model's output from its ONNX export; None: the trained model
    row_gate: rowgate.RowGate | None = None  # the gate's fast yes (None: always pandera)
    in_flight: int = 0
    retired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def scoring(self) -> ScoringSpec:
        return self.spec.scoring  # type: ignore[return-value]

    @property
    def serving(self) -> ServingSpec:
        return self.scoring.serving  # type: ignore[return-value]

    def metadata(self) -> dict[str, Any]:
        described = self.serving.describe(self.params, self.model_dir, self.ref.model) if self.serving.describe else {}
        return {
            "domain": self.spec.name,
            "version": self.ref.version,
            "model": self.ref.model,
            "dvc_md5": self.ref.md5,
            "metrics": self.record.get("metrics", {}),
            "promoted_at": self.record.get("promoted_at"),
            "git_commit": self.record.get("git_commit"),
            "runtime": self.runtime,
            **({"onnx_files": self.predict.files} if self.predict else {}),
            **described,
        }

    def score(self, bodies: list[Any]) -> list[Outcome]:
        """Score requests together; each gets its rows or its reasons, as if it had been sent alone."""
        outcomes = [Outcome() for _ in bodies]
        with tempfile.TemporaryDirectory(prefix=".aiflow-request-") as tmp:
            scratch = Path(tmp)
            batch = None
            if self.serving.tables is not None and len(bodies) > 1:
                try:
                    table = self.serving.tables(self.params, bodies, scratch)
                    batch = Batch(table, list(range(len(bodies))), [len(body.items) for body in bodies])
                except PipelineError:
                    pass  # one of them: each alone says which
            if batch is None:
                tables = {}
                for i, body in enumerate(bodies):
                    try:
                        tables[i] = self.serving.table(self.params, body, scratch / str(i))
                    except RequestError as err:
                        outcomes[i].errors = err.errors
                    except PipelineError as err:  # what a reader refuses in a file, it refuses in a request
                        outcomes[i].errors = [error(["items"], str(err), "read")]
                batch = Batch.of(tables)
            gated = self._gate_together(batch, outcomes)
            if gated.which:
                self._score_gated(gated, bodies, outcomes, scratch)
        return outcomes

    def _gate_together(self, batch: Batch, outcomes: list[Outcome]) -> Batch:
        """The gate once over every request's items; a request with a failing item is gated again alone,
        so a check that looks across rows (unique ids, duplicates) never sees another request's rows."""
        if not batch.which:
            return batch
        merged, owner = batch.table, batch.owner()
        named = self.suite.id_column
        apart = named in merged and not pd.api.types.is_numeric_dtype(merged[named])  # "item 0" of one request
        checked = merged.assign(**{named: _prefixed(merged[named], owner)}) if apart else merged  # is not another's
        passed = self.row_gate.passes(checked) if self.row_gate is not None else None
        if passed is not None:  # every item passes, the usual case: no pandera run to name failures
            if apart:
                passed = passed.assign(**{named: passed[named].str.split("|", n=1).str[1]})
            return replace(batch, table=passed)
        _, failing = self._failures(checked)
        rows = [r for found in failing.values() for r in (found or [])]
        suspect = (
            set(batch.which) if any(found is None for found in failing.values()) else {int(owner[r]) for r in rows}
        )
        parts = batch.parts()
        for i in suspect:
            errors, _ = self._failures(parts[i])
            if errors:
                outcomes[i].errors = errors
        kept = batch.only([i for i in batch.which if outcomes[i].errors is None])
        return replace(kept, table=self.suite.schema.coerce_dtype(kept.table)) if kept.which else kept

    def _failures(self, table: pd.DataFrame) -> tuple[list[dict[str, Any]], dict[str, list[int] | None]]:
        """The scoring gate's row-level checks (pandera, the same severities): a 422 entry per failing item
        and the failing rows per check (None: the check failed for the table as a whole)."""
        suite = self.suite
        checks, failing_rows = run_pandera(table, suite.schema, self.severities, suite.id_column)
        errors, failing = [], {}
        for check in checks:
            if check.passed or check.severity not in ("block", "quarantine"):
                continue  # warn and info record facts; they never refuse an item
            column, _, name = check.name.rpartition(":")
            field = self.serving.source_field or column  # what the caller sent; the message names the check
            what = check.detail.split(" rows fail ", 1)[-1]
            rows = failing_rows.get(check.name)
            failing[check.name] = [int(r) for r in rows] if rows is not None else None
            for row in rows if rows is not None else [None]:
                item = [int(row)] if row is not None else []
                errors.append(
                    error(
                        ["items", *item, *([field] if field else [])],
                        f"{check.name} ({check.severity} in the scoring gate): {what}",
                        f"gate.{name or check.name}",
                    )
                )
        return errors, failing

    def _score_gated(self, batch: Batch, bodies: list[Any], outcomes: list[Outcome], scratch: Path) -> None:
        """One `score` call for every gated request; a refusal inside it is put down to each request alone."""
        try:
            for i, rows in self._score_together(batch, bodies, scratch).items():
                if isinstance(rows, RequestError):
                    outcomes[i].errors = rows.errors
                else:
                    outcomes[i].rows = rows
        except PipelineError as err:
            if len(batch.which) == 1:
                i = batch.which[0]
                outcomes[i].errors = [error(["items"], str(err).replace(item_prefix(i), ""), "scoring")]
                return
            for i in batch.which:  # which one? each alone says
                self._score_gated(batch.only([i]), bodies, outcomes, scratch)

    def _score_together(self, batch: Batch, bodies: list[Any], scratch: Path) -> dict[int, list[dict] | RequestError]:
        which, owner = batch.which, batch.owner()
        mine = [bodies[i] for i in which]
        if self.serving.combine:
            table, options = self.serving.combine(self.params, batch.table, batch.sizes, mine, self.context)
        else:
            table, options = batch.table, ScoreOptions()
        table.index = pd.RangeIndex(len(table))
        options = replace(options, maps_dir=scratch / "maps", predict=self.predict, drift=False)
        scored = self.scoring.score(self.params, self.model_dir, self.ref.model, table, options)
        predictions = scored.predictions
        rows_of = owner[predictions.index.to_numpy()]
        answers: dict[int, list[dict] | RequestError] = {}
        if self.serving.respond is None:  # the prediction rows: one conversion for the batch, then dealt out
            rows = records(predictions)
            for i in which:
                answers[i] = [rows[j] for j in np.flatnonzero(rows_of == i)]
            return answers
        for i in which:
            own = predictions[rows_of == i]
            first = int(np.flatnonzero(owner == i)[0])
            own = own.set_axis(own.index.to_numpy() - first)  # the request's own item numbers
            try:
                answers[i] = self.serving.respond(self.params, own, bodies[i], scratch)
            except RequestError as err:
                answers[i] = err
        return answers


@dataclass(frozen=True)
class Batch:
    """Requests' rows in one table: request which[k]'s are the next sizes[k] rows (split and joined once)."""

    table: pd.DataFrame
    which: list[int]
    sizes: list[int]

    @classmethod
    def of(cls, tables: dict[int, pd.DataFrame]) -> Batch:
        which = list(tables)
        table = pd.concat([tables[i] for i in which], ignore_index=True) if tables else pd.DataFrame()
        return cls(table, which, [len(tables[i]) for i in which])

    def owner(self) -> np.ndarray:
        """The request of each row."""
        return np.repeat(self.which, self.sizes)

    def parts(self) -> dict[int, pd.DataFrame]:
        ends = np.cumsum(self.sizes)
        return {
            i: self.table.iloc[end - size : end].reset_index(drop=True)
            for i, end, size in zip(self.which, ends, self.sizes)
        }

    def only(self, keep: list[int]) -> Batch:
        """The rows of the requests in `keep`."""
        rows = np.isin(self.owner(), keep)
        return Batch(
            self.table[rows].reset_index(drop=True), keep, [s for i, s in zip(self.which, self.sizes) if i in keep]
        )


def _prefixed(ids: pd.Series, owner: np.ndarray) -> pd.Series:
    prefixes = pd.Series([item_prefix(int(i)) for i in owner], index=ids.index)
    return prefixes + ids.astype(str)


def item_prefix(request: int) -> str:
    """What makes an item id unique among requests scored together (`<request>|<id>`), where a domain needs
    that (files named by item); taken off again in answers and messages."""
    return f"{request}|"


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN -> null, numpy scalars -> Python)."""
    return json.loads(frame.to_json(orient="records", double_precision=15, date_format="iso"))


def load(root: Path, domain: str, runtime: str = "torch", context: dict[str, Any] | None = None) -> ServedModel:
    """The domain's champion, verified by its DVC hash and ready to score requests."""
    spec = load_spec(domain)
    if spec.scoring is None or spec.scoring.serving is None:
        raise PipelineError(f"{domain}: the HTTP endpoint is not available for this domain yet")
    if runtime not in RUNTIMES:
        raise PipelineError(f"--runtime: expected one of {', '.join(RUNTIMES)}, got '{runtime}'")
    if runtime != "torch" and (spec.export is None or spec.scoring.serving.onnx is None):
        raise PipelineError(  # every domain has one now: a guard for the next domain
            f"{domain}: --runtime {runtime}: the endpoint has no ONNX runtime for this domain; "
            "serve the trained model with --runtime torch"
        )
    params = load_params(root, domain)
    ref = modelstore.resolve(root, domain, "champion", params.evaluate.candidate)
    record = read_registry(root, domain)["champion"] or {}
    model_dir = Path(tempfile.mkdtemp(prefix=f".aiflow-serve-{domain}-"))
    try:
        modelstore.materialise(root, ref, model_dir)
        from domains.common.scoring import _trained_params

        trained = _trained_params(spec, params, model_dir)
        suite = spec.scoring.gate_suite(trained)
        gate_params = params.gate.model_copy(
            update={"severity": {k: v for k, v in params.gate.severity.items() if k in set(_names(suite))}}
        )
        severities = resolve_severities(suite, gate_params)
        predict = None if runtime == "torch" else _onnx(root, spec, ref, trained, model_dir, runtime == "int8")
    except BaseException:
        shutil.rmtree(model_dir, ignore_errors=True)
        raise
    return ServedModel(
        spec,
        ref,
        trained,
        model_dir,
        severities,
        suite,
        record,
        context or {},
        runtime,
        predict,
        row_gate=rowgate.compile(suite.schema, severities),
    )


def _onnx(
    root: Path, spec: DomainSpec, ref: modelstore.ModelRef, trained: DomainParams, model_dir: Path, int8: bool
) -> Any:
    """The version's ONNX export, made and proven equal to it on its test split now (as `aiflow export` does;
    nothing else is trusted), inside the model's folder; the model's output from it (ScoreOptions.predict)."""
    from domains.common.export import ExportRequest, export

    out = model_dir / ".onnx"
    export(root, ExportRequest(spec.name, ref.version if ref.version != "candidate" else "candidate", int8, out))
    serving = spec.scoring.serving if spec.scoring else None
    if serving is None or serving.onnx is None:
        raise PipelineError(f"{spec.name}: no ONNX runtime")  # load() checked it: not reached
    return serving.onnx(trained, model_dir, out, ref.model, int8)


def onnx_predictor(
    export_dir: Path,
    models: list[str],
    int8: bool,
    feeds: dict[str, Callable[[Any], dict[str, np.ndarray]]],
    maps: bool = False,
) -> Callable[[str, Any], Any]:
    """P(positive) of each of `models` from its exported graph (the int8 one where `int8` and one was kept,
    else float32), fed by `feeds[name](features)`; one thread each: the endpoint batches instead. `maps`: an
    anomaly model's (map output as the graph gives it, score) instead (defects)."""
    import onnxruntime as ort

    manifest = json.loads((export_dir / "manifest.json").read_text())
    sessions, files = {}, {}
    for name in models:
        figures = manifest["models"].get(name)
        if figures is None:
            raise PipelineError(
                f"--runtime onnx: {name} was not exported: "
                f"{manifest['not_converted'].get(name, 'not convertible')}; serve --runtime torch"
            )
        quantized = (figures.get("int8") or {}).get("file") if int8 else None
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.log_severity_level = 1, 3
        session = ort.InferenceSession(
            str(export_dir / (quantized or figures["file"])), options, providers=["CPUExecutionProvider"]
        )
        sessions[name] = (session, figures["output"], figures["column"], figures.get("map_output"))
        files[name] = quantized or figures["file"]

    def predict(name: str, features: Any) -> Any:
        session, output, column, map_output = sessions[name]
        if maps:
            anomaly, out = session.run([map_output, output], feeds[name](features))
            return anomaly, np.asarray(out, dtype=np.float64)
        (out,) = session.run([output], feeds[name](features))
        return np.asarray(out if column is None else out[:, column], dtype=np.float64)

    predict.files = files  # type: ignore[attr-defined]  # which graph serves each model, for /metadata
    return predict


def _names(suite: Any) -> list[str]:
    from domains.common.gate import check_names

    return check_names(suite)


class ModelHolder:
    """The champion being served, swapped for a newly promoted one without a restart or a failed request.

    `acquire` hands out the current model and counts it in use; `release` gives it back. A change of
    registry/<domain>.json (checked at most every `poll_seconds`) loads the new champion aside; if it
    loads and warms up, one assignment makes it current; the old one's files go once nothing uses it.
    A champion that fails to load (hash mismatch, missing) leaves the old one serving, with the reason in
    `reload_error`, and is tried again every RETRY_SECONDS.
    """

    def __init__(
        self,
        root: Path,
        domain: str,
        runtime: str = "torch",
        context: dict[str, Any] | None = None,
        poll_seconds: float = 0.5,
        warm: Any = None,
    ):
        self.root, self.domain, self.runtime, self.context = root, domain, runtime, context or {}
        self.poll_seconds = poll_seconds
        self.warm = warm  # a body scored once by each new model before it serves (the endpoint keeps the last good one)
        self.registry = root / "registry" / f"{domain}.json"
        self._stamp = self._registry_stamp()
        self.current = load(root, domain, runtime, self.context)
        self._warm_up(self.current)
        self.reload_error: str | None = None
        self.reloads = 0
        self._checked = time.monotonic()
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def _registry_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.registry.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _warm_up(self, model: ServedModel) -> None:
        if self.warm is not None:
            model.score([self.warm])  # loads and caches what the first request would wait for

    def acquire(self) -> ServedModel:
        with self._lock:
            model = self.current
            with model.lock:
                model.in_flight += 1
            return model

    def release(self, model: ServedModel) -> None:
        with model.lock:
            model.in_flight -= 1
            done = model.retired and model.in_flight == 0
        if done:
            shutil.rmtree(model.model_dir, ignore_errors=True)

    def check(self) -> bool:
        """Reload when the registry changed; True when a new champion now serves. Called from one thread."""
        now = time.monotonic()
        if now - self._checked < self.poll_seconds or now < self._retry_at:
            return False
        self._checked = now
        stamp = self._registry_stamp()
        if stamp == self._stamp:
            return False
        try:
            champion = read_registry(self.root, self.domain)["champion"]
            if (
                champion
                and champion.get("train_md5") == self.current.ref.md5
                and f"v{champion['version']}" == self.current.ref.version
            ):
                return False  # the file changed, the champion did not
            fresh = load(self.root, self.domain, self.runtime, self.context)
            self._warm_up(fresh)
        except Exception as err:  # the old champion keeps serving; /health says why; tried again later
            self.reload_error = f"{type(err).__name__}: {err}"
            self._retry_at = now + RETRY_SECONDS
            return False
        finally:
            if self._retry_at <= now:
                self._stamp = stamp
        with self._lock:
            old, self.current = self.current, fresh
        self.reload_error = None
        self.reloads += 1
        with old.lock:
            old.retired = True
            done = old.in_flight == 0
        if done:
            shutil.rmtree(old.model_dir, ignore_errors=True)
        return True

    def close(self) -> None:
        with self._lock:
            shutil.rmtree(self.current.model_dir, ignore_errors=True)
