"""Flow overhead: a domain's pipeline as a Prefect flow run vs a bare `dvc repro` of the same stages,
per domain and for every domain at once, cold (every stage computes) and no-op (everything cached).

Two throwaway copies of the repository with this checkout's params.yaml: one runs
`dvc repro report@<domain>...`, the other `aiflow flow <domain>... --no-promote` against a real
Prefect server on loopback (no promotion or push, so both sides do the same work), one after the
other. Per domain: bare cold, flow cold, bare no-op, flow no-op. Then every domain together:
no-op, and cold with `--force` on both sides (every stage computes again). Targets (issue 11): the
flow at most 10 % over the bare repro when cold, and at most 5 s when nothing changed.

On a shared machine the stages' own seconds vary from run to run by more than the 10 % at stake, so
cold runs are also compared net of them: each side's wall time minus the seconds its stages
recorded (`data/<domain>/.runs/<stage>.json`) is what DVC, Prefect and process start-up cost it, and `cold_ratio_net` is
the bare wall time plus the flow's extra cost, over the bare wall time. Each case is printed and
saved as soon as it is measured.

    python -m benchmarks.orchestration                 # every domain in params.yaml, then all together
    python -m benchmarks.orchestration fraud recsys    # these, then these two together
    python -m benchmarks.orchestration --together      # every domain together only
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
HEADER = ["", "cold repro", "cold flow", "ratio", "net ratio", "no-op repro", "no-op flow", "targets"]


def stage_seconds(root: Path, domains: list[str]) -> float:
    """The seconds the domains' stages recorded themselves (their work, without DVC's or Prefect's)."""
    from domains.common.provenance import stage_records

    return round(sum(r["seconds"] for d in domains for r in stage_records(root, d).values()), 3)


def timed_pair(
    kind: str, domains: list[str], bare: Path, flowed: Path, api: dict, force: bool = False
) -> dict[str, Any]:
    """One bare `dvc repro` and one flow run of `domains`, one after the other."""
    extra = ["--force"] if force else []
    repro = ["dvc", "repro", *extra, *(f"report@{d}" for d in domains)]
    flow = ["aiflow", "flow", *domains, "--no-promote", *extra]
    flow_env = {
        **subprocess_env(code_root=flowed),
        "PREFECT_API_URL": api["url"],
        "PREFECT_HOME": api["env"]["PREFECT_HOME"],
    }
    result: dict[str, Any] = {f"{kind}_repro_command": " ".join(repro), f"{kind}_flow_command": " ".join(flow)}
    result[f"{kind}_repro_s"], _ = run(repro, bare, subprocess_env(code_root=bare))
    result[f"{kind}_flow_s"], _ = run(flow, flowed, flow_env)
    result[f"{kind}_overhead_s"] = round(result[f"{kind}_flow_s"] - result[f"{kind}_repro_s"], 3)
    result[f"{kind}_ratio"] = round(result[f"{kind}_flow_s"] / result[f"{kind}_repro_s"], 3)
    if kind == "cold":
        stages = {"repro": stage_seconds(bare, domains), "flow": stage_seconds(flowed, domains)}
        net = {side: result[f"cold_{side}_s"] - stages[side] for side in ("repro", "flow")}
        result["cold_stage_s"] = stages
        result["cold_net_overhead_s"] = round(net["flow"] - net["repro"], 3)
        result["cold_ratio_net"] = round(1 + result["cold_net_overhead_s"] / result["cold_repro_s"], 3)
        result["cold_met"] = result["cold_ratio_net"] <= COLD_RATIO_TARGET
    else:
        result["noop_met"] = result["noop_flow_s"] <= NOOP_TARGET_S
    return result


def row(label: str, r: dict[str, Any]) -> list[Any]:
    met = [r[k] for k in ("cold_met", "noop_met") if k in r]
    return [
        label,
        r.get("cold_repro_s"),
        r.get("cold_flow_s"),
        r.get("cold_ratio"),
        r.get("cold_ratio_net"),
        r.get("noop_repro_s"),
        r.get("noop_flow_s"),
        "error" if "error" in r else ("met" if all(met) else "MISSED"),
    ]


def main(argv: list[str] | None = None) -> int:
    from domains.common.registry import configured_domains
    from tests.conftest import copy_repo, prefect_server

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.orchestration",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("domains", nargs="*", help="default: every domain in params.yaml")
    parser.add_argument("--together", action="store_true", help="only the domains together, not one by one")
    args = parser.parse_args(argv)
    domains = args.domains or configured_domains(ROOT)
    before = context()
    cases: dict[str, dict[str, Any]] = {}

    def measured(label: str, result: dict[str, Any]) -> None:
        cases.setdefault(label, {"domains": domains if label == "all together" else [label]}).update(result)
        print_table(label, HEADER, [row(label, cases[label])])
        save("orchestration", {"cases": cases}, before)

    with tempfile.TemporaryDirectory(prefix="aiflow-bench-orchestration-") as tmp:
        work = Path(tmp)
        for name in ("bare", "flow", "home"):
            (work / name).mkdir()
        bare, flowed = copy_repo(work / "bare"), copy_repo(work / "flow")
        with prefect_server(work / "home") as api:
            if args.together:  # fresh copies: a plain run is cold
                steps = [("all together", "cold", domains, False), ("all together", "noop", domains, False)]
            else:  # each domain is built already when they run together: no-op first, then cold with --force
                steps = [(d, kind, [d], False) for d in domains for kind in ("cold", "noop")]
                if len(domains) > 1:
                    steps += [("all together", "noop", domains, False), ("all together", "cold", domains, True)]
            for label, kind, chosen, force in steps:
                print(f"== {label}: {kind} ==", flush=True)
                try:
                    measured(label, timed_pair(kind, chosen, bare, flowed, api, force))
                except RuntimeError as err:  # a domain that fails is reported, the others still measured
                    print(f"failed: {str(err).splitlines()[0]}", flush=True)
                    measured(label, {"error": str(err)[-2000:]})
    print_table(
        f"Prefect flow run vs bare dvc repro (seconds; targets: cold ratio <= {COLD_RATIO_TARGET}, "
        f"no-op flow <= {NOOP_TARGET_S:.0f} s)",
        HEADER,
        [row(label, r) for label, r in cases.items()],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
