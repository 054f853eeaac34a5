"""The candidate against the domain's baselines: thresholds relative to the data, not tuned on one data set.

An absolute floor such as `auroc >= 0.8` means "the model learned something" on the data it was tuned on,
and something else on the next: MovieLens's best RMSE sits above a floor tuned on synthetic ratings. What
it means everywhere is that the candidate beats the simple models trained on the same split (logistic
regression, popularity, the patch Gaussian) on the promotion metric, by `evaluate.baseline_margin` in the
metric's own units. Absolute floors stay available (`thresholds_min`, `thresholds_max`).
"""

from __future__ import annotations

import math
from typing import Any

from domains.common.contract import DomainSpec
from domains.common.errors import ParamsError, PipelineError
from domains.common.params import DomainParams


def promotion_metric(spec: DomainSpec, params: DomainParams) -> str:
    """The domain's params may name it (`evaluate.primary`), else its contract's."""
    return getattr(params.evaluate, "primary", None) or spec.metric.primary


def check_margin(spec: DomainSpec, params: DomainParams) -> None:
    """A margin no model could ever beat a baseline by (or one every model always does) is a params error."""
    metric, margin = promotion_metric(spec, params), params.evaluate.baseline_margin
    low, high = spec.metric.range(metric)
    if not abs(margin) < high - low:
        raise ParamsError(
            f"params.yaml: {spec.name}.evaluate.baseline_margin: {margin} is outside the range of "
            f"{metric} ({low:g} to {high:g}): a difference between two models is less than {high - low:g}"
        )


def baseline_checks(
    spec: DomainSpec, params: DomainParams, metrics: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    """One threshold per baseline: the candidate's promotion metric must beat the baseline's by the margin.

    Written like the absolute thresholds (metric, bound, threshold, value, passed), so the report shows them
    side by side; `why` is the reason when one fails.
    """
    candidate, metric, margin = (
        params.evaluate.candidate,
        promotion_metric(spec, params),
        params.evaluate.baseline_margin,
    )
    higher = spec.metric.higher_is_better.get(metric, True)
    checks = []
    for name in params.evaluate.baselines:
        if name not in metrics:
            raise PipelineError(f"evaluate.baselines: '{name}' is not a trained model; models: {', '.join(metrics)}")
        if metric not in metrics[name]:
            having = [m for m, values in metrics.items() if metric in values and m != candidate]
            raise PipelineError(
                f"evaluate.baselines: '{name}' has no {metric} (the promotion metric); "
                f"models that have: {', '.join(having) or 'none'}"
            )
        base, value = metrics[name][metric], metrics[candidate].get(metric)
        threshold = base + margin if higher else base - margin
        passed = value is not None and not math.isnan(value) and (value > threshold if higher else value < threshold)
        by = f" by evaluate.baseline_margin={margin:g}" if margin else ""
        shown = "missing" if value is None else f"{value:.4f}"
        checks.append(
            {
                "metric": metric,
                "bound": "min" if higher else "max",
                "threshold": threshold,
                "value": value,
                "passed": passed,
                "baseline": name,
                "baseline_value": base,
                "margin": margin,
                "why": f"{candidate}'s {metric} {shown} {'beats' if passed else 'does not beat'} {name}'s {base:.4f}{by}",
            }
        )
    return checks
