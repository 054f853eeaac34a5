"""Running DVC from Python (the CLI and the Prefect flows): the same `dvc repro` a user types."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def dvc_env() -> dict[str, str]:
    """Stages call `aiflow`: put this interpreter's bin directory first on PATH so they find it."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def dvc(root: Path, *args: str, capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run `dvc <args>` in `root`. On timeout the whole process group (dvc and its stage) is killed
    and subprocess.TimeoutExpired is raised."""
    proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=root, env=dvc_env(), text=True,
                            stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
