"""Flow overhead: the fraud pipeline as a Prefect flow run vs a bare `dvc repro` of the same stages.

Two throwaway copies of the repository, default params, one after the other on the same machine:
cold runs (every stage computes) and no-op runs (everything cached). The flow runs against a real
Prefect server on loopback, without promotion or push, so both sides do the same work.

    python -m benchmarks.orchestration
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from tests.conftest import copy_repo, env_with_venv, prefect_server, run

RESULTS = Path(__file__).parent / "results"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    began = time.perf_counter()
    run(cmd, cwd, env=env, timeout=1800)
    return time.perf_counter() - began


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for name in ("bare", "flow", "home"):
            (tmp_path / name).mkdir()
        bare, flowed = copy_repo(tmp_path / "bare"), copy_repo(tmp_path / "flow")
        with prefect_server(tmp_path / "home") as api:
            flow_cmd = ["aiflow", "flow", "fraud", "--no-promote"]
            figures = {
                "cold_dvc_repro_s": timed(["dvc", "repro", "report@fraud"], bare, env_with_venv()),
                "cold_flow_s": timed(flow_cmd, flowed, api["env"]),
                "noop_dvc_repro_s": timed(["dvc", "repro", "report@fraud"], bare, env_with_venv()),
                "noop_flow_s": timed(flow_cmd, flowed, api["env"]),
            }
    for kind in ("cold", "noop"):
        figures[f"{kind}_overhead_s"] = figures[f"{kind}_flow_s"] - figures[f"{kind}_dvc_repro_s"]
        figures[f"{kind}_ratio"] = figures[f"{kind}_flow_s"] / figures[f"{kind}_dvc_repro_s"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "orchestration.json").write_text(json.dumps(figures, indent=2))
    print(f"{'':10} {'dvc repro':>10} {'flow':>10} {'overhead':>10} {'ratio':>7}")
    for kind in ("cold", "noop"):
        print(f"{kind:10} {figures[f'{kind}_dvc_repro_s']:>9.1f}s {figures[f'{kind}_flow_s']:>9.1f}s "
              f"{figures[f'{kind}_overhead_s']:>9.1f}s {figures[f'{kind}_ratio']:>7.2f}")


if __name__ == "__main__":
    main()
