"""What evaluate adds to a domain's metrics from its per-unit predictions (issue 19): 95 % intervals,
the paired comparison with the champion, and slices.

The champion's predictions on the same split are reused from the DVC cache (by the hash recorded at
promotion); when the split changed, the champion's trained models (also by their hash) are scored
again on this split by the domain's own evaluate. When neither works the comparison says why.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from domains.common import units
from domains.common.contract import DomainSpec
from domains.common.errors import ParamsError, PipelineError
from domains.common.params import DomainParams, validate_section
from domains.common.stages import primary_metric


def unavailable(spec: DomainSpec, params: DomainParams) -> dict[str, str]:
    """Slices on a column this source never has (card history on ULB): skipped, so the defaults run on every source."""
    out = {}
    for name, definition in params.evaluate.slices.items():
        having = spec.slice_sources.get(definition.column)
        if having is not None and params.data.source not in having:
            out[name] = f"{definition.column} is not in {params.data.source} data (only in: {', '.join(having)})"
    return out


def check_slice_columns(spec: DomainSpec, params: DomainParams, frame: pd.DataFrame) -> None:
    """A slice on a column this data should have and has not (age without u.user): one line naming the key."""
    skipped = unavailable(spec, params)
    for name, definition in params.evaluate.slices.items():
        if name not in skipped and units.SLICE_PREFIX + definition.column not in frame:
            raise ParamsError(
                f"params.yaml: {spec.name}.evaluate.slices.{name}.column: '{definition.column}' is not "
                f"in {params.data.source} data"
            )


def with_intervals(
    metrics: dict[str, dict[str, float]], frame: pd.DataFrame, spec: DomainSpec, params: DomainParams
) -> dict[str, dict[str, float]]:
    """`<metric>_ci_low` and `<metric>_ci_high` next to each point value that has an interval kind."""
    found = units.intervals(frame, spec.metric.intervals, params.evaluate.resamples, params.seed)
    out = {model: dict(values) for model, values in metrics.items()}
    for model, by_metric in found.items():
        for metric, (low, high) in by_metric.items():
            if model in out and metric in out[model]:
                out[model][f"{metric}_ci_low"], out[model][f"{metric}_ci_high"] = low, high
    return out


@dataclass
class SliceVerdict:
    table: pd.DataFrame
    worst: dict[str, Any] | None
    gaps: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # slice -> why it was not cut

    def wide(self, candidate: str) -> pd.DataFrame:
        """One row per group: the candidate's value and interval, then the other models' values, then its status."""
        t = self.table
        ours = t[t["model"] == candidate].set_index(["slice", "group"])
        out = ours[["metric", "units", "rows", "value", "ci_low", "ci_high"]].rename(
            columns={"value": candidate, "ci_low": "95% low", "ci_high": "95% high"}
        )
        for model in (m for m in t["model"].unique() if m != candidate):
            out[model] = t[t["model"] == model].set_index(["slice", "group"])["value"]
        out["status"] = ours["status"]
        return out.reset_index()

    def summary(self) -> dict[str, Any]:
        return {"worst": self.worst, "protected_gaps": self.gaps, "skipped": self.skipped}


def slices(frame: pd.DataFrame, spec: DomainSpec, params: DomainParams) -> SliceVerdict | None:
    e = params.evaluate
    primary = primary_metric(spec, params)
    skipped = unavailable(spec, params)
    specs = [
        units.SliceSpec(
            n,
            d.column,
            d.bins,
            d.protected,
            d.metric or primary,
            spec.metric.intervals[d.metric or primary],
            d.reference,
        )
        for n, d in e.slices.items()
        if (d.metric or primary) in spec.metric.intervals and n not in skipped
    ]
    if not specs:
        return None
    table = units.slice_table(frame, specs, e.candidate, e.min_slice_size, e.resamples, params.seed)
    higher = spec.metric.higher_is_better.get(primary, True)
    return SliceVerdict(
        table, units.worst_slice(table, e.candidate, primary, higher), units.protected_gaps(table, e.candidate), skipped
    )


def compare(
    root: Path,
    spec: DomainSpec,
    params: DomainParams,
    frame: pd.DataFrame,
    champion: dict[str, Any],
    prepared_dir: Path,
) -> units.Paired | str:
    """The paired difference candidate - champion on this split's units, or why it could not be computed."""
    primary = primary_metric(spec, params)
    kind = spec.metric.intervals.get(primary)
    if kind is None:
        return f"{primary} has no per-unit definition"
    found = champion_predictions(root, spec, params, champion, frame, prepared_dir)
    if isinstance(found, str):
        return found
    theirs, rescored = found
    try:
        return units.paired(
            frame,
            params.evaluate.candidate,
            theirs,
            champion["model"],
            primary,
            kind,
            spec.metric.higher_is_better.get(primary, True),
            params.evaluate.resamples,
            params.seed,
            rescored,
        )
    except ValueError as err:
        return f"champion v{champion['version']}'s predictions do not fit: {err}"


def champion_predictions(
    root: Path,
    spec: DomainSpec,
    params: DomainParams,
    champion: dict[str, Any],
    frame: pd.DataFrame,
    prepared_dir: Path,
) -> tuple[pd.DataFrame, bool] | str:
    """The champion's per-unit predictions on this split: saved ones when the split is the same, else re-scored."""
    version = f"champion v{champion['version']}"
    if champion.get("test_hash") == units.split_hash(frame) and champion.get("predictions_md5"):
        try:
            return _saved(root, spec.name, champion), False
        except PipelineError as err:
            saved_error = f"its saved predictions are unavailable ({err})"
    else:
        saved_error = (
            "it was evaluated on another split" if champion.get("test_hash") else "it has no saved predictions"
        )
    if not champion.get("train_md5"):
        return f"{version} could not be compared on these units: {saved_error}, and it has no recorded model hash"
    try:
        rescored = rescore(root, spec, params, champion, prepared_dir)
    except (PipelineError, ParamsError, OSError, ValueError, KeyError) as err:
        return f"{version} could not be compared on these units: {saved_error}, and re-scoring it failed: {err}"
    if units.split_hash(rescored) != units.split_hash(frame):
        return f"{version} could not be compared on these units: re-scored, its split still differs"
    return rescored, True


def _saved(root: Path, domain: str, champion: dict[str, Any]) -> pd.DataFrame:
    from domains.common import modelstore

    with tempfile.TemporaryDirectory(prefix="aiflow-champion-") as tmp:
        file = Path(tmp) / units.PREDICTIONS_FILE
        modelstore.materialise_file(root, domain, f"v{champion['version']}", champion["predictions_md5"], file)
        return pd.read_parquet(file)


def rescore(
    root: Path, spec: DomainSpec, params: DomainParams, champion: dict[str, Any], prepared_dir: Path
) -> pd.DataFrame:
    """Score the champion's trained models on the current prepared split with the domain's own evaluate.

    Today's params with the champion's own `train` section (saved next to it), so its models load; the
    features are this split's, so a champion trained on other features fails here and says so.
    """
    from domains.common import modelstore

    ref = modelstore.ModelRef(spec.name, f"v{champion['version']}", champion["model"], champion["train_md5"])
    with tempfile.TemporaryDirectory(prefix="aiflow-rescore-") as tmp:
        train_dir, out_dir = Path(tmp) / "train", Path(tmp) / "evaluate"
        out_dir.mkdir(parents=True)
        modelstore.materialise(root, ref, train_dir)
        saved = train_dir / modelstore.TRAINED_PARAMS
        trained = json.loads(saved.read_text()) if saved.is_file() else {}
        own = validate_section(
            spec.params_model,
            spec.name,
            {**params.model_dump(mode="json"), **{k: v for k, v in trained.items() if k == "train"}},
            saved.name,
        )
        evaluation = spec.evaluate(own, prepared_dir, train_dir, out_dir)
    if evaluation.units is None:
        raise PipelineError("the domain's evaluate gave no per-unit predictions")
    return evaluation.units


def slice_figure(verdict: SliceVerdict, candidate_model: str, limit: float | None) -> Any:
    """The candidate's metric per slice group with its interval; groups too small to judge are hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from domains.common.contract import Figure

    table = verdict.table
    candidate = table[table["model"] == candidate_model].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(candidate), 4) + 1))
    metrics = list(dict.fromkeys(candidate["metric"]))
    labels = [f"{r.slice}: {r.group}" + (f" ({r.metric})" if len(metrics) > 1 else "") for r in candidate.itertuples()]
    y = range(len(candidate))[::-1]
    judged = (candidate["status"] == "ok").to_numpy()
    low = (candidate["value"] - candidate["ci_low"]).clip(lower=0).fillna(0)
    high = (candidate["ci_high"] - candidate["value"]).clip(lower=0).fillna(0)
    for mask, face in ((judged, None), (~judged, "none")):  # hollow: too few units to judge
        ys = [v for v, m in zip(y, mask) if m]
        ax.errorbar(candidate["value"][mask], ys, xerr=[low[mask], high[mask]], fmt="o", capsize=3, mfc=face)
    if limit is not None:
        ax.axvline(limit, color="#cf222e", linestyle=":", label=f"min_slice_metric {limit:g}")
        ax.legend(loc="lower right")
    ax.set_yticks(list(y), labels)
    metric = " / ".join(metrics)
    ax.set(xlabel=metric, title=f"{candidate_model}: {metric} per slice (95 % interval)")
    worst = verdict.worst
    caption = (
        f"Worst judged group: {worst['slice']}={worst['group']} ({worst['value']:.4f})."
        if worst
        else "No group was large enough to judge."
    )
    return Figure("Slices", fig, caption + " Hollow: too few units to judge.")
