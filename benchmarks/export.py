"""ONNX export benchmarks (`python -m benchmarks.export fraud|sentiment|medical|recsys|defects|all [--real]`).

Each domain's model trained on its synthetic default: this checkout's trained model (`--model
candidate`) where dvc.lock has one, else a throwaway copy of the repository trained by `dvc repro`.
`aiflow export`'s code with --int8 then prints, per model, parity on the whole test split (max and
mean |p_onnx - p_ref|, items within tolerance of the threshold) and, for the int8 models, size
ratio, primary-metric change and CPU latency at batch 1 and 64 against float32. Goals (issue 16):
parity within 1e-5 (torch, linear) or 1e-4 (trees); int8 size <= 0.30x, metric within 1 point,
>= 1.5x faster at batch 1. Results: benchmarks/results/export_<domain>.json (committed, with machine and load).
`--real` (sentiment, medical): trained instead on IMDB / PneumoniaMNIST from ../shared/datasets with the scoring
benchmark's shortened settings (skipped when absent), exported on the whole real test split: export_<domain>_real.json.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, context, print_table, run, save, subprocess_env

DOMAINS = ("fraud", "sentiment", "medical", "recsys", "defects")


def _imdb() -> Path:
    from benchmarks.scoring import IMDB_ARCHIVE

    return IMDB_ARCHIVE


def _pneumonia() -> Path:
    from benchmarks.scoring import PNEUMONIAMNIST

    return PNEUMONIAMNIST


REAL_DATA = {"sentiment": _imdb, "medical": _pneumonia}  # --real: the int8 figures on real data


def _trained_root(domain: str, folder: Path) -> Path:
    """This checkout when its dvc.lock holds the domain's trained model, else a copy trained by dvc repro."""
    from domains.common.champion import train_md5
    from domains.common.paths import stage_dir

    if train_md5(ROOT, domain) and stage_dir(ROOT, domain, "train").is_dir():
        return ROOT
    from tests.conftest import copy_repo

    repo = copy_repo(folder)
    print(f"{domain}: no trained model here; dvc repro report@{domain} in a throwaway copy", flush=True)
    run(["dvc", "repro", f"report@{domain}"], repo, subprocess_env(repo))
    return repo


def _real_root(domain: str, folder: Path) -> Path:
    """A copy trained on the domain's real data (benchmarks/scoring.py's shortened settings, whole test split)."""
    from benchmarks.scoring import IMDB_ARCHIVE, _trained_candidate

    data = {"source": "aclimdb", "path": str(IMDB_ARCHIVE)} if domain == "sentiment" else None
    return _trained_candidate(folder, domain, data)


def bench(domain: str, real: bool = False) -> dict[str, Any] | None:
    from domains.common.export import ExportRequest, export

    if real and domain not in REAL_DATA:
        raise SystemExit(f"--real: {domain} has no real-data export run; choose from {', '.join(REAL_DATA)}")
    if real and not REAL_DATA[domain]().exists():
        print(f"{domain}: {REAL_DATA[domain]()} not found: skipped")
        return None
    before = context()
    with tempfile.TemporaryDirectory(prefix=f"export-{domain}-") as tmp:
        root = _real_root(domain, Path(tmp)) if real else _trained_root(domain, Path(tmp) / "repo")
        manifest = export(root, ExportRequest(domain, "candidate", int8=True, out=Path(tmp) / "export"))
    rows, int8_rows = [], []
    for name, figures in manifest["models"].items():
        p = figures["parity"]
        rows.append(
            [
                name,
                figures["kind"],
                p["items"],
                p["max_abs_diff"],
                p["mean_abs_diff"],
                p["tolerance"],
                p["near_threshold"],
                p["decisions_differ"],
            ]
        )
        q = figures.get("int8", {})
        if "size_ratio" in q:
            lat = q["latency_ms"]
            int8_rows.append(
                [
                    name,
                    q["size_ratio"],
                    q["weight_ratio"],
                    q["metric"],
                    q["float32"],
                    q["int8"],
                    q["change_points"],
                    lat["batch_1"]["float32"],
                    lat["batch_1"]["int8"],
                    q["speedup_batch_1"],
                    lat["batch_64"]["float32"],
                    lat["batch_64"]["int8"],
                    "yes" if q["exported"] else "no",
                ]
            )
    print_table(
        f"{domain}: parity on the test split (max |p_onnx - p_ref|)",
        ["model", "kind", "items", "max diff", "mean diff", "tolerance", "near thr.", "differ"],
        [[r[0], r[1], r[2], f"{r[3]:.2e}", f"{r[4]:.2e}", f"{r[5]:g}", r[6], r[7]] for r in rows],
    )
    if int8_rows:
        print_table(
            f"{domain}: int8 against float32 (latency ms, CPU)",
            [
                "model",
                "size x",
                "weights x",
                "metric",
                "float32",
                "int8",
                "change pts",
                "b1 f32",
                "b1 int8",
                "b1 speedup",
                "b64 f32",
                "b64 int8",
                "kept",
            ],
            int8_rows,
        )
    for name, reason in manifest["not_converted"].items():
        print(f"  {name}: not exported: {reason}")
    result = {
        "domain": domain,
        "data": REAL_DATA[domain]().name if real else "synthetic default",
        "model": manifest["model"],
        "test_items": manifest["test_items"],
        "models": manifest["models"],
        "not_converted": manifest["not_converted"],
        "packages": manifest["packages"],
    }
    save(f"export_{domain}{'_real' if real else ''}", result, before)
    return result


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or ["all"]
    real = "--real" in names
    names = [n for n in names if n != "--real"] or ["all"]
    chosen = (tuple(REAL_DATA) if real else DOMAINS) if names == ["all"] else names
    unknown = [n for n in chosen if n not in DOMAINS]
    if unknown:
        print(f"unknown: {', '.join(unknown)}; choose from {', '.join(DOMAINS)} or all", file=sys.stderr)
        return 2
    for name in chosen:
        bench(name, real)
    return 0


if __name__ == "__main__":
    sys.exit(main())
