"""Running DVC from Python (the CLI and the Prefect flows): the same `dvc repro` a user types,
one process per command (`dvc`) or many commands in one long-lived DVC process (`DvcSession`)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path


def dvc_env() -> dict[str, str]:
    """Stages call `aiflow`: put this interpreter's bin directory first on PATH so they find it."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def dvc(root: Path, *args: str, capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run `dvc <args>` in `root`. On timeout the whole process group (dvc and its stage) is killed
    and subprocess.TimeoutExpired is raised."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=dvc_env(),
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class DvcSession:
    """One long-lived DVC process that runs `dvc <args>` commands one after another, each through DVC's
    own command line (`dvc.cli.main`) with its own stdout and stderr: the very commands `dvc()` runs,
    without paying DVC's start-up (about a second, more than a no-op `dvc repro` of one stage) each time.

    Commands run one at a time (a lock). On timeout the whole session (DVC and the stage it runs) is
    killed and subprocess.TimeoutExpired raised; the next command needs a new session.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "domains.common.dvc"],
            cwd=root,
            env=dvc_env(),
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self._proc.poll() is None

    def run(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        with self._lock, tempfile.TemporaryDirectory(prefix="aiflow-dvc-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(json.dumps({"args": list(args), "stdout": str(out), "stderr": str(err)}) + "\n")
            self._proc.stdin.flush()
            ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
            if not ready:
                self.kill()
                raise subprocess.TimeoutExpired(["dvc", *args], timeout or 0)
            reply = self._proc.stdout.readline()
            code = json.loads(reply)["code"] if reply else self._proc.wait()  # no reply: the session died
            return subprocess.CompletedProcess(["dvc", *args], code, _read(out), _read(err))

    def close(self) -> None:
        if self.alive() and self._proc.stdin is not None:
            self._proc.stdin.close()  # end of commands: the session exits
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        _kill_group(self._proc)


def _read(file: Path) -> str:
    return file.read_text(errors="replace") if file.is_file() else ""


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process and everything it started (dvc and the stage command), SIGKILL after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _serve() -> None:
    """The session's side: read one command per line on stdin, run it with stdout and stderr sent to the
    files it names (stage commands inherit them), answer its exit code on the original stdout."""
    from dvc.cli import main
    from dvc.commands import repro, status  # noqa: F401  what the first command would import, while the caller sets up
    from dvc.repo import Repo  # noqa: F401

    commands, replies = os.fdopen(os.dup(0)), os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # stage commands must not read the command stream
    own_stderr = os.dup(2)
    for line in commands:
        command = json.loads(line)
        with open(command["stdout"], "w") as out, open(command["stderr"], "w") as err:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            try:
                code = main(command["args"])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(devnull, 1)
                os.dup2(own_stderr, 2)
        replies.write(json.dumps({"code": code}) + "\n")
        replies.flush()


if __name__ == "__main__":
    _serve()
