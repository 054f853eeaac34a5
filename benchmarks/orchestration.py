"""Flow overhead: each domain's pipeline as a Prefect flow run vs a bare `dvc repro` of the same stages,
then every domain at once, cold (every stage computes) and no-op (everything cached), side by side.

For each case, two fresh throwaway copies of the repository with this checkout's params.yaml: one
runs `dvc repro report@<domain>...`, the other `aiflow flow <domain>... --no-promote` against a real
Prefect server on loopback (no promotion or push, so both sides do the same work), one after the
other: bare cold, flow cold, bare no-op, flow no-op. Targets (issue 11): the flow at most 10 % over
the bare repro when cold, and at most 5 s when nothing changed.

On a shared machine the stages' own seconds vary from run to run by more than the 10 % at stake, so
the cold runs are also compared net of them: each side's wall time minus the seconds its stages
recorded (`_stage.json`) is what DVC, Prefect and process start-up cost it, and `cold_ratio_net` is
the bare wall time plus the flow's extra cost, over the bare wall time.

    python -m benchmarks.orchestration                 # every domain in params.yaml, then all together
    python -m benchmarks.orchestration fraud recsys    # these, then these two together
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, context, print_table, run, save, subprocess_env

COLD_RATIO_TARGET = 1.10
NOOP_TARGET_S = 5.0


def bench_case(domains: list[str], api: dict, work: Path) -> dict[str, Any]:
    """Cold and no-op, bare repro and flow, for `domains` (one domain, or several together) in `work`."""
    from tests.conftest import copy_repo

    bare, flowed = work / "bare", work / "flow"
    for copy in (bare, flowed):
        copy.mkdir(parents=True)
        copy_repo(copy)
    repro = ["dvc", "repro", *(f"report@{d}" for d in domains)]
    flow = ["aiflow", "flow", *domains, "--no-promote"]
    flow_env = {**subprocess_env(code_root=flowed), "PREFECT_API_URL": api["url"], "PREFECT_HOME": api["env"]["PREFECT_HOME"]}
    result: dict[str, Any] = {"domains": domains, "bare_command": " ".join(repro), "flow_command": " ".join(flow)}
    for kind in ("cold", "noop"):
        result[f"{kind}_repro_s"], _ = run(repro, bare, subprocess_env(code_root=bare))
        result[f"{kind}_flow_s"], _ = run(flow, flowed, flow_env)
        result[f"{kind}_overhead_s"] = round(result[f"{kind}_flow_s"] - result[f"{kind}_repro_s"], 3)
        result[f"{kind}_ratio"] = round(result[f"{kind}_flow_s"] / result[f"{kind}_repro_s"], 3)
        if kind == "cold":
            result["cold_stage_s"] = {"repro": stage_seconds(bare, domains), "flow": stage_seconds(flowed, domains)}
            net = {side: result[f"cold_{side}_s"] - result["cold_stage_s"][side] for side in ("repro", "flow")}
            result["cold_net_overhead_s"] = round(net["flow"] - net["repro"], 3)
            result["cold_ratio_net"] = round(1 + result["cold_net_overhead_s"] / result["cold_repro_s"], 3)
    result["cold_met"] = result["cold_ratio_net"] <= COLD_RATIO_TARGET
    result["noop_met"] = result["noop_flow_s"] <= NOOP_TARGET_S
    return result


def stage_seconds(root: Path, domains: list[str]) -> float:
    """The seconds the domains' stages recorded themselves (their work, without DVC's or Prefect's)."""
    from domains.common.provenance import stage_records

    return round(sum(r["seconds"] for d in domains for r in stage_records(root, d).values()), 3)


def main(argv: list[str] | None = None) -> int:
    from domains.common.registry import configured_domains
    from tests.conftest import prefect_server

    parser = argparse.ArgumentParser(prog="python -m benchmarks.orchestration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("domains", nargs="*", help="default: every domain in params.yaml")
    domains = parser.parse_args(argv).domains or configured_domains(ROOT)
    cases = [[d] for d in domains] + ([domains] if len(domains) > 1 else [])
    before = context()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="aiflow-bench-orchestration-") as tmp:
        (Path(tmp) / "home").mkdir()
        with prefect_server(Path(tmp) / "home") as api:
            for case in cases:
                print(f"== {' + '.join(case)} ==", flush=True)
                try:
                    results.append(bench_case(case, api, Path(tmp) / "-".join(case)))
                except RuntimeError as err:  # a domain that fails is reported, the others still measured
                    print(f"failed: {str(err).splitlines()[0]}", flush=True)
                    results.append({"domains": case, "error": str(err)[-2000:]})
    rows = [[" + ".join(r["domains"]) if len(r["domains"]) == 1 or len(cases) == 1 else "all together",
             r.get("cold_repro_s"), r.get("cold_flow_s"), r.get("cold_ratio"), r.get("cold_ratio_net"),
             r.get("noop_repro_s"), r.get("noop_flow_s"),
             "error" if "error" in r else ("met" if r["cold_met"] and r["noop_met"] else "MISSED")] for r in results]
    print_table(f"Prefect flow run vs bare dvc repro (seconds; targets: cold ratio <= {COLD_RATIO_TARGET}, "
                f"no-op flow <= {NOOP_TARGET_S:.0f} s)",
                ["", "cold repro", "cold flow", "ratio", "net ratio", "no-op repro", "no-op flow", "targets"], rows)
    save("orchestration", {"cases": results}, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
