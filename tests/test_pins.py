"""The installed stack must be the one the pins in pyproject.toml name (and constraints.txt locks)."""

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    pins = {}
    for req in requirements:
        (spec,) = req.specifier  # exactly one specifier: an exact pin
        assert spec.operator == "==", f"{req} is not pinned with =="
        pins[req.name] = Version(spec.version)
    return pins


def test_installed_versions_match_the_pins():
    drift = {}
    for name, pinned in _pins().items():
        installed = Version(metadata.version(name))
        if installed.public != pinned.public:  # torch's local '+cpu' tag is not a drift
            drift[name] = f"pinned {pinned}, installed {installed}"
    assert not drift, drift


def test_lock_file_agrees_with_the_pins():
    locked = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            locked[Requirement(name).name.lower().replace("_", "-")] = Version(version)
    for name, pinned in _pins().items():
        assert locked.get(name.lower()) == pinned, (
            f"constraints.txt locks {name} at {locked.get(name.lower())}, pyproject pins {pinned}"
        )


def test_prefect_server_compatible_stack():
    """prefect 3.8.8's server breaks with fastapi >= 0.155 and its scheduler with sqlalchemy 2.1."""
    assert Version(metadata.version("fastapi")) < Version("0.155")
    assert Version(metadata.version("sqlalchemy")) < Version("2.1")
