"""Find domains and load their validated params. Adding a domain needs no change here."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from pathlib import Path

import domains
from domains.common.baselines import check_margin
from domains.common.contract import DomainSpec
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
    check_margin(spec, params)
    return params
