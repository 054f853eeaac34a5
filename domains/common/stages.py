"""The stage runner `dvc.yaml` calls (`aiflow stage <stage> <domain>`).

It owns everything domain-agnostic: reading and writing stage directories, timing, the gate,
thresholds, the champion comparison and the report. Each stage reads only its DVC deps and
writes only under data/<domain>/<stage>/.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from domains.common import distributed, paths
from domains.common.baselines import baseline_checks, promotion_metric
from domains.common.champion import read_champion, train_md5
from domains.common.contract import DomainSpec, Evaluation, TrainEnv
from domains.common.errors import GateBlocked, ParamsError, PipelineError
from domains.common.gate import GX_DOCS, run_gate, write_gate_result
from domains.common.params import DomainParams, TrainerParams
from domains.common.registry import load_params, load_spec
from domains.common.units import Paired

TABLE = "table.parquet"
VALIDATED = "validated.parquet"
QUARANTINE = "quarantine.parquet"


def run_stage(stage: str, domain: str, root: Path | None = None) -> None:
    """Run one stage of one domain: validate params first, then time and record the stage."""
    if stage not in STAGE_FUNCTIONS:
        raise PipelineError(f"unknown stage '{stage}'; stages: {', '.join(paths.STAGES)}")
    root = root or paths.project_root()
    params = load_params(root, domain)
    spec = load_spec(domain)
    out = paths.stage_dir(root, domain, stage)
    if out.exists():
        shutil.rmtree(out)  # a stage's outputs are exactly what this run writes
    out.mkdir(parents=True)
    record_file = paths.stage_record(root, domain, stage)
    record_file.unlink(missing_ok=True)  # no record of an earlier run next to this run's outputs
    started = datetime.now(UTC)
    began = time.perf_counter()
    facts = STAGE_FUNCTIONS[stage](spec, params, root, out) or {}
    record = {
        "stage": stage,
        "domain": domain,
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - began, 3),
        **facts,
    }
    record_file.parent.mkdir(parents=True, exist_ok=True)
    record_file.write_text(json.dumps(record, indent=2))


def _acquire(spec: DomainSpec, params: DomainParams, root: Path, out: Path) -> None:
    table = spec.acquire(params, out)
    table.to_parquet(out / TABLE)


def _validate(spec: DomainSpec, params: DomainParams, root: Path, out: Path) -> None:
    table = pd.read_parquet(paths.stage_dir(root, spec.name, "acquire") / TABLE)
    result, kept, quarantine = run_gate(table, spec.gate_suite(params), params.gate, docs_dir=out / GX_DOCS)
    write_gate_result(result, out)
    quarantine.to_parquet(out / QUARANTINE)
    if result.verdict == "block":
        raise GateBlocked(
            [
                f"gate blocked {spec.name}: {len(result.reasons)} check(s) failed (see {out / 'gate.html'})",
                *(f"  {reason}" for reason in result.reasons),
            ]
        )
    kept.to_parquet(out / VALIDATED)


def _prepare(spec: DomainSpec, params: DomainParams, root: Path, out: Path) -> None:
    validated_file = paths.stage_dir(root, spec.name, "validate") / VALIDATED
    if not validated_file.is_file():  # the gate blocked, or never ran: nothing may be prepared
        raise PipelineError(f"{spec.name}: no data passed the gate yet (run `dvc repro validate@{spec.name}`)")
    validated = pd.read_parquet(validated_file)
    spec.prepare(params, validated, paths.stage_dir(root, spec.name, "acquire"), out)


def _train(spec: DomainSpec, params: DomainParams, root: Path, out: Path) -> dict[str, Any]:
    from domains.common.provenance import device_description

    train = getattr(params, "train", None)
    if isinstance(train, TrainerParams) and train.processes > 1 and not distributed.active():
        return _train_in_processes(spec.name, train, train.processes, root, out)
    _train_here(spec, params, root, out)
    return {"device": device_description()}  # where training ran, threads included, for the report


def _train_here(spec: DomainSpec, params: DomainParams, root: Path, out: Path) -> None:
    prepared = paths.stage_dir(root, spec.name, "prepare")
    env = TrainEnv(paths.checkpoint_dir(root, spec.name), fingerprint=_fingerprint(params, prepared))
    spec.train(params, prepared, out, env)
    if spec.scoring is not None:  # what scoring needs, saved with the model: its params and its drift reference
        from domains.common.scoring import save_reference

        save_reference(spec, params, prepared, out)


def _train_in_processes(domain: str, train: TrainerParams, processes: int, root: Path, out: Path) -> dict[str, Any]:
    """`train.processes` > 1: the same training in that many processes under torchrun (see distributed.py)."""
    import torch

    from domains.common.provenance import device_description
    from domains.common.trainer import select_device, threads_per_process

    if select_device(train.device).type == "cuda" and processes > torch.cuda.device_count():
        raise ParamsError(
            f"train.processes: {processes} processes need {processes} GPUs; {torch.cuda.device_count()} visible"
        )
    threads = threads_per_process(train.num_threads, processes)
    try:
        distributed.launch(processes, domain, root, threads)
    except distributed.RankFailed:
        shutil.rmtree(out, ignore_errors=True)  # whatever rank 0 wrote before the failure: no model from a failed run
        raise
    torch.set_num_threads(threads)  # what each process used, for the record
    return {"device": f"{processes} processes (torchrun), each on {device_description()}", "processes": processes}


def train_in_process(domain: str, root: Path) -> None:
    """One of torchrun's training processes: rank 0 writes the stage's outputs, the others a scratch folder."""
    spec, params = load_spec(domain), load_params(root, domain)
    if distributed.rank() == 0:
        _train_here(spec, params, root, paths.stage_dir(root, domain, "train"))
        return
    with tempfile.TemporaryDirectory(prefix=f"aiflow-{domain}-rank{distributed.rank()}-") as scratch:
        _train_here(spec, params, root, Path(scratch))


def _evaluate(spec: DomainSpec, params: DomainParams, root: Path, out: Path) -> None:
    prepared = paths.stage_dir(root, spec.name, "prepare")
    evaluation = spec.evaluate(params, prepared, paths.stage_dir(root, spec.name, "train"), out)
    champion = read_champion(root, spec.name)
    assessed: dict[str, Any] = {}
    if evaluation.units is not None:  # intervals, slices and the paired comparison (domains.common.assess)
        from domains.common import assess, units

        assess.check_slice_columns(spec, params, evaluation.units)
        evaluation.metrics = assess.with_intervals(evaluation.metrics, evaluation.units, spec, params)
        evaluation.units.to_parquet(out / units.PREDICTIONS_FILE)
        verdict = assess.slices(evaluation.units, spec, params)
        if verdict is not None:
            evaluation.tables["slices"] = verdict.wide(params.evaluate.candidate)
            evaluation.figures.append(
                assess.slice_figure(verdict, params.evaluate.candidate, params.evaluate.min_slice_metric)
            )
            assessed["slices"] = verdict.summary()
        assessed["test_split"] = {
            "hash": units.split_hash(evaluation.units),
            "rows": len(evaluation.units),
            "units": int(evaluation.units["unit"].nunique()),
        }
        if champion is not None and champion.get("train_md5") != train_md5(root, spec.name):
            assessed["comparison"] = assess.compare(root, spec, params, evaluation.units, champion, prepared)
    else:  # a domain without per-unit predictions yet: point estimates only
        pd.DataFrame().to_parquet(out / "predictions.parquet")
    write_evaluation(evaluation, out)
    gate = json.loads(paths.gate_file(root, spec.name).read_text())
    decision = decide(spec, params, evaluation.metrics, gate, champion, train_md5(root, spec.name), **assessed)
    (out / paths.DECISION_FILE).write_text(json.dumps(decision, indent=2))


def _report(spec: DomainSpec, params: DomainParams, root: Path, out: Path) -> None:
    from domains.common.report import write_report  # matplotlib/jinja only where needed

    write_report(spec, params, root, out)


# Each writes its outputs into the folder it is given; what it returns goes into its run record (paths.stage_record).
STAGE_FUNCTIONS: dict[str, Callable[[DomainSpec, DomainParams, Path, Path], dict[str, Any] | None]] = {
    "acquire": _acquire,
    "validate": _validate,
    "prepare": _prepare,
    "train": _train,
    "evaluate": _evaluate,
    "report": _report,
}


def _fingerprint(params: DomainParams, prepared: Path) -> str:
    """Hash of everything training depends on, so a stale checkpoint is never resumed."""
    digest = hashlib.sha256(params.model_dump_json().encode())
    for file in sorted(p for p in prepared.rglob("*") if p.is_file()):
        digest.update(file.name.encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def write_evaluation(evaluation: Evaluation, out: Path) -> None:
    import matplotlib.pyplot as plt  # the figures were made with it (domains/*/figures.py); imported late, as there

    (out / paths.METRICS_FILE).write_text(json.dumps(evaluation.metrics, indent=2, sort_keys=True))
    (out / "plots").mkdir()
    for name, frame in evaluation.plots.items():
        frame.to_csv(out / "plots" / f"{name}.csv", index=False)
    (out / "figures").mkdir()
    captions = []
    for i, fig in enumerate(evaluation.figures):
        file = f"{i:02d}_{_slug(fig.title)}.png"
        fig.figure.savefig(out / "figures" / file, dpi=110, bbox_inches="tight")
        plt.close(fig.figure)  # pyplot keeps every figure until closed: a leak across in-process runs
        captions.append({"file": file, "title": fig.title, "caption": fig.caption})
    (out / "figures" / "figures.json").write_text(json.dumps(captions, indent=2))
    (out / "tables").mkdir()
    for name, frame in evaluation.tables.items():
        frame.to_csv(out / "tables" / f"{name}.csv", index=False)
    (out / "notes.json").write_text(json.dumps(evaluation.notes, indent=2))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def primary_metric(spec: DomainSpec, params: DomainParams) -> str:
    """The promotion metric: the domain's params may name it (`evaluate.primary`), else its contract's."""
    return promotion_metric(spec, params)


def decide(
    spec: DomainSpec,
    params: DomainParams,
    metrics: dict[str, dict[str, float]],
    gate: dict[str, Any],
    champion: dict[str, Any] | None,
    model_md5: str | None = None,
    comparison: Paired | str | None = None,
    slices: dict[str, Any] | None = None,
    test_split: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Challenger vs thresholds, gate warnings, slices and champion: promote or keep, with the reason.

    `model_md5` identifies the trained models (their DVC hash): the champion itself is never a challenger.
    `comparison` is the paired difference with the champion on the same units (units.Paired), or why there
    is none (a string: the decision then compares point estimates and says so).
    """
    candidate = params.evaluate.candidate
    if candidate not in metrics:
        raise PipelineError(f"evaluate.candidate: '{candidate}' is not a trained model; models: {', '.join(metrics)}")
    scores = metrics[candidate]
    thresholds = (
        [
            {
                "metric": m,
                "bound": "min",
                "threshold": t,
                "value": scores.get(m),
                "passed": scores.get(m, float("-inf")) >= t,
            }
            for m, t in params.evaluate.thresholds_min.items()
        ]
        + [
            {
                "metric": m,
                "bound": "max",
                "threshold": t,
                "value": scores.get(m),
                "passed": scores.get(m, float("inf")) <= t,
            }
            for m, t in params.evaluate.thresholds_max.items()
        ]
        + baseline_checks(spec, params, metrics)
    )
    primary = primary_metric(spec, params)
    if primary not in scores:
        raise PipelineError(
            f"evaluate.primary: the candidate '{candidate}' has no metric '{primary}' (it has: {', '.join(scores)})"
        )
    warnings = sum(1 for c in gate["checks"] if not c["passed"] and c["severity"] == "warn")
    failed = [t for t in thresholds if not t["passed"]]
    slice_block = _slice_block(spec, params, primary, slices)
    if failed:
        decision, reason = (
            "keep",
            "threshold failed: "
            + "; ".join(
                t["why"]
                if "why" in t
                else f"{t['metric']} missing"
                if t["value"] is None
                else f"{t['metric']}={t['value']:.4f} {'<' if t['bound'] == 'min' else '>'} {t['threshold']}"
                for t in failed
            ),
        )
    elif warnings > params.gate.max_warnings:
        decision, reason = (
            "keep",
            f"gate raised {warnings} warning(s), more than gate.max_warnings={params.gate.max_warnings}",
        )
    elif slice_block:
        decision, reason = "keep", slice_block
    elif champion is None:
        decision, reason = "promote", f"no champion yet; {candidate} passes every threshold"
    elif model_md5 and champion.get("train_md5") == model_md5:
        decision, reason = "keep", f"this model is the champion (v{champion['version']})"
    elif primary not in champion["metrics"]:  # the promotion metric changed since it was promoted
        decision, reason = (
            "promote",
            f"champion v{champion['version']} was not scored on {primary}; {candidate} passes every threshold",
        )
    elif isinstance(comparison, Paired):
        decision, reason = _paired_decision(spec, params, comparison, scores, champion)
    else:
        verb = (
            "beats" if spec.metric.better(primary, scores[primary], champion["metrics"][primary]) else "does not beat"
        )
        decision = "promote" if verb == "beats" else "keep"
        reason = f"{primary} {scores[primary]:.4f} {verb} champion v{champion['version']} ({champion['metrics'][primary]:.4f})"
        if isinstance(comparison, str):
            reason += f"; point estimates only, not paired: {comparison}"
    return {
        "candidate": candidate,
        "primary_metric": primary,
        "metrics": scores,
        "thresholds": thresholds,
        "gate_verdict": gate["verdict"],
        "gate_warnings": warnings,
        "champion": champion,
        "decision": decision,
        "reason": reason,
        **(
            {
                "comparison": {"paired": True, **asdict(comparison)}
                if isinstance(comparison, Paired)
                else {"paired": False, "why": comparison}
            }
            if comparison is not None
            else {}
        ),
        **({"slices": slices} if slices is not None else {}),
        **({"test_split": test_split} if test_split is not None else {}),
    }


def _slice_block(spec: DomainSpec, params: DomainParams, primary: str, slices: dict[str, Any] | None) -> str | None:
    """`evaluate.min_slice_metric`: the reason to keep when the worst judged slice group is under it."""
    limit, worst = params.evaluate.min_slice_metric, (slices or {}).get("worst")
    if limit is None or worst is None:
        return None
    higher = spec.metric.higher_is_better.get(primary, True)
    if (worst["value"] < limit) if higher else (worst["value"] > limit):
        return (
            f"slice {worst['slice']}={worst['group']}: {primary} {worst['value']:.4f} "
            f"{'<' if higher else '>'} evaluate.min_slice_metric {limit} ({worst['units']} units)"
        )
    return None


def _paired_decision(
    spec: DomainSpec, params: DomainParams, paired: Paired, scores: dict[str, float], champion: dict[str, Any]
) -> tuple[str, str]:
    """Promote when the difference's lower bound is above the margin, or, under a non-inferiority
    margin, when it is not worse by more than that and policy prefers it (newer, or cheaper)."""
    e, version = params.evaluate, f"champion v{champion['version']}"
    said = f"{paired.describe()} vs {version}"
    if paired.low > e.margin:
        return "promote", f"{said}: lower bound above evaluate.margin {e.margin:g}"
    ni = e.non_inferiority
    if ni is not None and paired.low > -ni.margin:
        if ni.prefer == "newer":
            return "promote", f"{said}: not worse by more than non_inferiority.margin {ni.margin:g}, and newer"
        ours, theirs = scores.get(ni.cost_metric), champion["metrics"].get(ni.cost_metric)
        if ours is not None and theirs is not None and ours < theirs:
            return "promote", (
                f"{said}: not worse by more than non_inferiority.margin {ni.margin:g}, and cheaper "
                f"({ni.cost_metric} {ours:.4g} < {theirs:.4g})"
            )
        return "keep", f"{said}: not worse by more than {ni.margin:g}, but not cheaper on {ni.cost_metric}"
    return "keep", f"{said}: lower bound not above evaluate.margin {e.margin:g}"
