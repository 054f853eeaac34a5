"""Running DVC from Python (the CLI and the Prefect flows): the same `dvc repro` a user types."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def dvc_env() -> dict[str, str]:
    """Stages call `aiflow`: put this interpreter's bin directory first on PATH so they find it."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def dvc(root: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=dvc_env(),
                          capture_output=capture, text=True)
