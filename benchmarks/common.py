"""What every benchmark shares: timing, the subprocess environment, the machine's context, tables,
results files, and a cold + no-op `dvc repro` of any domain in a throwaway copy of the repository."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domains.common.paths import STAGES  # light: no pandas

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = ROOT.parent / "shared" / "datasets"  # real data: optional, benchmarks skip without it
BIN = Path(sys.executable).parent


class Clock:
    """Named wall-clock laps: `with clock("read"): ...`, then `clock.laps`."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        yield
        self.laps[name] = round(time.perf_counter() - began, 3)


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest wall time of `repeats` calls of `fn`."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return round(min(times), 3)


def subprocess_env(code_root: Path | None = None) -> dict[str, str]:
    """The venv's tools first on PATH, no telemetry; `code_root` (a copy of the repo) imported first.

    The package is installed editable, so without PYTHONPATH a copy would run this checkout's code.
    """
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }
    env.pop("AIFLOW_ROOT", None)
    if code_root is not None:
        env["PYTHONPATH"] = str(code_root)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run a command; return its wall seconds and stdout. A failure raises with the output's tail."""
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = round(time.perf_counter() - began, 3)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds, proc.stdout


def context() -> dict[str, Any]:
    """Where and when the figures were taken: they mean little without the machine and its load."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "cpu": _cpu_model(),  # the same seed trains other weights on another CPU (bf16 / AMX kernels differ)
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "git_commit": head,
        "uncommitted_files": len(dirty.splitlines()),
    }


def _cpu_model() -> str:
    """The CPU's model name and its bf16 / int8 features, from /proc/cpuinfo (empty elsewhere)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return " ".join([name, *sorted(flags & {"avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx512f"})])


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    cells = [header, *[[fmt(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def verdict(value: float, target: float) -> str:
    return "met" if value < target else "MISSED"


def save(name: str, result: dict[str, Any], before: dict[str, Any]) -> Path:
    """Write a benchmark's result, with the machine's context before and its load after."""
    result["context"] = {**before, "load_avg_1m_after": round(os.getloadavg()[0], 2)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"-> {path.relative_to(ROOT)}\n", flush=True)
    return path


def domain_section(domain: str, overrides: dict) -> dict:
    """The domain's section of this checkout's params.yaml with `overrides` merged in (nested keys one by one)."""
    import yaml

    def merge(base: dict, changes: dict) -> dict:
        out = dict(base)
        for key, value in changes.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    return merge(yaml.safe_load((ROOT / "params.yaml").read_text())[domain], overrides)


@contextlib.contextmanager
def stage_root(domain: str, section: dict, stages: tuple[str, ...]) -> Iterator[tuple[Path, dict[str, float]]]:
    """A throwaway project root with `section` as the domain's params, after running `stages` in-process;
    yields the root and each stage's seconds."""
    import yaml

    from domains.common.stages import run_stage

    with tempfile.TemporaryDirectory(prefix=f"aiflow-bench-{domain}-") as tmp:
        root = Path(tmp)
        (root / "registry").mkdir()
        (root / "params.yaml").write_text(yaml.safe_dump({domain: section}, sort_keys=False))
        seconds = {}
        for stage in stages:
            began = time.perf_counter()
            run_stage(stage, domain, root)
            seconds[stage] = round(time.perf_counter() - began, 1)
        yield root, seconds


def main_for(
    domain: str,
    benchmarks: dict[str, Callable[[], dict[str, Any] | None]],
    doc: str | None,
    argv: list[str] | None = None,
) -> int:
    """`python -m benchmarks.<domain> NAME|all`: run each, print its table, save its result."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{domain}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", choices=[*benchmarks, "all"])
    run_benchmarks(domain, benchmarks, parser.parse_args(argv).name)
    return 0


def run_benchmarks(domain: str, benchmarks: dict[str, Callable[[], dict[str, Any] | None]], name: str) -> None:
    """Run one benchmark (or `all`, one after the other), saving each result with the machine's load."""
    for each in benchmarks if name == "all" else [name]:
        print(f"== {domain} {each} ==", flush=True)
        before = context()
        result = benchmarks[each]()
        if result is not None:
            save(f"{domain}_{each.replace('-', '_')}", result, before)


def bench_repro(domain: str, cold_target_s: float | None = None, noop_target_s: float = 5.0) -> dict[str, Any]:
    """Cold `dvc repro report@<domain>` with this checkout's params.yaml, then a no-op one, in a copy of the repo."""
    from domains.common import paths
    from tests.conftest import copy_repo, stages_ran

    with tempfile.TemporaryDirectory(prefix="aiflow-bench-repro-") as tmp:
        root = copy_repo(Path(tmp))
        env = subprocess_env(code_root=root)
        cold_s, cold_out = run(["dvc", "repro", f"report@{domain}"], root, env)
        records = {s: json.loads(paths.stage_record(root, domain, s).read_text()) for s in STAGES}
        gate = json.loads(paths.gate_file(root, domain).read_text())
        noop_s, noop_out = run(["dvc", "repro", f"report@{domain}"], root, env)

    stages = {s: r["seconds"] for s, r in records.items()}
    result = {
        "command": f"dvc repro report@{domain}",
        "cold_s": cold_s,
        "cold_stages_ran": sorted(stages_ran(cold_out)),
        "stage_s": stages,
        "dvc_and_process_overhead_s": round(cold_s - sum(stages.values()), 3),
        "noop_s": noop_s,
        "noop_stages_ran": sorted(stages_ran(noop_out)),
        "rows": gate["rows_in"],
        "gate_verdict": gate["verdict"],
        "device": records["train"].get("device"),
    }
    rows: list[list[Any]] = [[f"  {s}", stages[s], ""] for s in STAGES]
    rows += [
        ["  dvc + process start-up", result["dvc_and_process_overhead_s"], ""],
        ["cold repro", cold_s, f"< {cold_target_s:.0f} s: {verdict(cold_s, cold_target_s)}" if cold_target_s else ""],
        ["no-op repro", noop_s, f"< {noop_target_s:.0f} s: {verdict(noop_s, noop_target_s)}"],
    ]
    print_table(
        f"dvc repro report@{domain}, {result['rows']} rows at the gate (seconds)", ["", "seconds", "target"], rows
    )
    return result


def repro_main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.common repro <domain>...`: the cold and no-op repro of each domain."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.common repro")
    parser.add_argument("domains", nargs="+")
    for domain in parser.parse_args(argv).domains:
        print(f"== {domain} repro ==", flush=True)
        before = context()
        save(f"{domain}_repro", bench_repro(domain), before)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["repro"]:
        sys.exit("usage: python -m benchmarks.common repro <domain> [<domain> ...]")
    sys.exit(repro_main(sys.argv[2:]))
