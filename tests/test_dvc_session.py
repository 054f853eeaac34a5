"""DvcSession: many `dvc` commands in one long-lived DVC process, each with its own output and exit code,
the same as `dvc()` gives; a timeout kills the session and the stage it runs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from domains.common.dvc import DvcSession, dvc
from tests.conftest import GIT, run

DVC_YAML = """\
stages:
  hello:
    cmd: 'echo hello > out.txt && echo to-stderr >&2'
    outs: [out.txt]
  broken:
    cmd: 'echo "error: broken on purpose" >&2 && exit 3'
  slow:
    cmd: sleep 60 && touch slow.txt
    outs: [slow.txt]
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    run([*GIT, "add", "-A"], tmp_path)
    run([*GIT, "commit", "-qm", "init"], tmp_path)
    return tmp_path


def test_commands_in_one_session_match_separate_processes(repo):
    session = DvcSession(repo)
    try:
        first = session.run("repro", "--single-item", "hello")
        assert first.returncode == 0 and "Running stage 'hello'" in first.stdout and "to-stderr" in first.stderr
        second = session.run("repro", "--single-item", "hello")
        assert second.returncode == 0 and "Running stage" not in second.stdout  # cached, and nothing of the first
        broken = session.run("repro", "--single-item", "broken")
        alone = dvc(repo, "repro", "--single-item", "broken", capture=True)
        assert broken.returncode == alone.returncode != 0
        assert "error: broken on purpose" in broken.stderr and "ERROR: failed to reproduce 'broken'" in broken.stderr
        assert session.run("status", "hello").stdout == dvc(repo, "status", "hello", capture=True).stdout
    finally:
        session.close()
    assert not session.alive()


def test_timeout_kills_the_session_and_its_stage(repo):
    session = DvcSession(repo)
    began = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        session.run("repro", "--single-item", "slow", timeout=3)
    assert time.monotonic() - began < 30 and not session.alive()
    assert not (repo / "slow.txt").exists()
    left = [
        p.info
        for p in psutil.process_iter(["pid", "cmdline", "cwd"])
        if p.info["cwd"] == str(repo) and "sleep" in " ".join(p.info["cmdline"] or [])
    ]
    assert not left, f"the stage outlived its session: {left}"
