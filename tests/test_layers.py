"""Imports point down only: aiflow (the console script) -> flows (Prefect) -> domains (plain functions)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each layer may not import: everything above it.
ABOVE = {"domains": ("flows", "aiflow"), "flows": ("aiflow",)}


def upward_imports(file: Path, above: tuple[str, ...]) -> list[str]:
    """Every import of a package in `above` in `file`, lazy ones inside functions and lazy("pkg.mod:fn") included."""
    pattern = re.compile(rf"^({'|'.join(above)})([.:]|$)")
    found = []
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif isinstance(node, ast.Call):  # importlib.import_module("flows.x"), lazy("flows.x:f")
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        else:
            continue
        found += [f"{file}:{node.lineno}: {name}" for name in names if pattern.match(name)]
    return found


@pytest.mark.parametrize("layer", sorted(ABOVE))
def test_no_layer_imports_a_layer_above_it(layer):
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"no Python files under {layer}/"
    offending = [hit for file in files for hit in upward_imports(file, ABOVE[layer])]
    assert not offending, "imports pointing up:\n" + "\n".join(offending)


def test_the_check_sees_lazy_imports(tmp_path):
    file = tmp_path / "probe.py"
    file.write_text(
        "import flowsy\nfrom domains.common import flows\n\ndef f():\n    from flows.pipeline import domain_flow\n"
        "    return lazy('flows.pipeline:x'), importlib.import_module('aiflow.cli')\n"
    )
    assert [hit.split(": ")[1] for hit in upward_imports(file, ABOVE["domains"])] == [
        "flows.pipeline",
        "flows.pipeline:x",
        "aiflow.cli",
    ]
