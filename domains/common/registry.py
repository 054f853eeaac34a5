"""Find domains and load their validated params. Adding a domain needs no change here."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from pathlib import Path

import domains
from domains.common.baselines import check_margin
from domains.common.contract import DomainSpec, kind_range
from domains.common.errors import ParamsError
from domains.common.params import DomainParams, read_yaml, validate_section
from domains.common.paths import params_file


def available_domains() -> list[str]:
    """Packages under domains/ other than the shared machinery."""
    return sorted(m.name for m in pkgutil.iter_modules(domains.__path__) if m.ispkg and m.name != "common")


def load_spec(name: str) -> DomainSpec:
    if name not in available_domains():
        raise ParamsError(f"unknown domain '{name}'; available: {', '.join(available_domains())}")
    module = importlib.import_module(f"domains.{name}")
    return module.DOMAIN


def configured_domains(root: Path) -> list[str]:
    """The domains params.yaml has a section for, in file order."""
    raw = read_yaml(params_file(root))
    available = available_domains()
    for name in raw:
        if name not in available:
            hint = difflib.get_close_matches(str(name), available, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ParamsError(f"params.yaml: '{name}' is not a domain{suggestion}; available: {', '.join(available)}")
    return list(raw)


def load_params(root: Path, name: str) -> DomainParams:
    """Validate the domain's params section; the first problem becomes a one-line ParamsError."""
    spec = load_spec(name)
    raw = read_yaml(params_file(root))
    if name not in raw:
        raise ParamsError(f"params.yaml: no '{name}:' section")
    params = validate_section(spec.params_model, name, raw[name], "params.yaml")
    if params.data.source not in spec.sources:
        raise ParamsError(
            f"params.yaml: {name}.data.source: unknown source '{params.data.source}'; accepted: {', '.join(spec.sources)}"
        )
    check_evaluate(spec, params)
    check_margin(spec, params)
    return params


def check_evaluate(spec: DomainSpec, params: DomainParams) -> None:
    """What the params model cannot know alone: slice columns the domain has, margins within the metric's range."""
    e, key = params.evaluate, f"params.yaml: {spec.name}.evaluate"
    for slice_name, definition in e.slices.items():
        if definition.column not in spec.slice_columns:
            known = ", ".join(spec.slice_columns) or "none"
            raise ParamsError(
                f"{key}.slices.{slice_name}.column: '{definition.column}' is not a slice column of "
                f"{spec.name} (known: {known})"
            )
        if definition.metric is not None and definition.metric not in spec.metric.intervals:
            raise ParamsError(
                f"{key}.slices.{slice_name}.metric: '{definition.metric}' has no per-unit definition "
                f"(known: {', '.join(spec.metric.intervals) or 'none'})"
            )
    ni = e.non_inferiority
    if ni is not None and ni.prefer == "cheaper" and ni.cost_metric not in spec.metric.higher_is_better:
        raise ParamsError(
            f"{key}.non_inferiority.cost_metric: '{ni.cost_metric}' is not a metric of {spec.name} "
            f"(known: {', '.join(spec.metric.higher_is_better)})"
        )
    primary = getattr(e, "primary", None) or spec.metric.primary
    if primary not in spec.metric.intervals:
        return
    low, high = kind_range(spec.metric.intervals[primary])
    margins = {
        "margin": e.margin,
        **({"non_inferiority.margin": e.non_inferiority.margin} if e.non_inferiority else {}),
    }
    for margin_key, value in margins.items():
        if value >= high - low:
            raise ParamsError(
                f"{key}.{margin_key}: {value} is outside the range of {primary} differences (under {high - low:g})"
            )
    if e.min_slice_metric is not None and not low <= e.min_slice_metric <= high:
        raise ParamsError(
            f"{key}.min_slice_metric: {e.min_slice_metric} is outside {primary}'s range [{low:g}, {high:g}]"
        )
