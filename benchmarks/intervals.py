"""Issue 19 on real data: how wide each domain's 95 % interval of its primary metric is, how large a
paired difference between two of its models is next to its interval, and what the bootstrap costs
next to the evaluate stage (goal: under 10 %).

    python -m benchmarks.intervals fraud|recsys|medical|sentiment|defects|all

Each runs the domain's own stages in-process on its real copy in ../shared/datasets (skipped when
absent), with shorter training than its accuracy benchmark: the intervals are what is measured here.
Results: benchmarks/results/intervals_<domain>.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.common import DATASETS, domain_section, print_table, run_benchmarks

GOAL_SHARE = 0.10  # bootstrap seconds / evaluate stage seconds
STAGES = ("acquire", "prepare", "train", "evaluate")  # the gate is measured elsewhere: its verdict is taken as pass
HANDBOOK = DATASETS / "finance-fraud" / "handbook-simulated" / "transactions.csv.gz"

# What each run changes in params.yaml's section (data, and training short enough for the benchmark).
SETUPS: dict[str, tuple[Path, dict[str, Any]]] = {
    # The handbook's protocol: a week of training from 2018-07-25, a 7-day label delay, a week of test
    # (the fraud benchmark's 385 test frauds); rows outside the windows' reach are not read.
    "fraud": (
        HANDBOOK,
        {
            "data": {"source": "handbook"},
            "prepare": {
                "train_start": "2018-07-25",
                "train_length": 8,
                "val_length": 1,
                "gap_length": 7,
                "test_length": 7,
            },
            "train": {"epochs": 5},
        },
    ),
    "recsys": (
        DATASETS / "recommender" / "ml-100k",
        {
            "data": {"source": "ml-100k"},
            "train": {
                "surprise_models": ["baseline_only", "svd"],
                "ranking_models": ["ease", "item_knn"],
                "epochs": 10,
            },
            "evaluate": {
                "slices": {
                    "activity": {"column": "activity", "bins": [20, 50, 100, 200]},
                    "popularity": {"column": "popularity", "bins": [20, 50, 100]},
                    "age": {"column": "age", "bins": [25, 35, 50], "protected": True},
                    "gender": {"column": "gender", "protected": True},
                }
            },
        },
    ),
    "medical": (
        DATASETS / "medical-imaging" / "medmnist" / "pneumoniamnist.npz",
        {
            "data": {"source": "medmnist"},
            "gate": {"severity": {"split_leakage": "quarantine"}},
            "prepare": {"image_size": 28},
            "train": {"epochs": 1},  # one CNN epoch: ~1 min on 2 busy cores
            "evaluate": {
                "slices": {
                    "class": {"column": "class", "metric": "accuracy"},
                    "brightness": {"column": "brightness", "bins": [110, 140]},
                    "contrast": {"column": "contrast", "bins": [50, 65]},
                }
            },
        },
    ),
    "sentiment": (
        DATASETS / "nlp-sentiment" / "imdb-aclImdb-v1" / "aclImdb_v1_labeled.tar.gz",
        {
            "data": {"source": "aclimdb"},
            "gate": {"severity": {"split_leakage": "quarantine"}, "max_warnings": 10},
            "train": {"models": ["tfidf_logreg", "nbsvm"], "ensemble": []},
            "evaluate": {"candidate": "nbsvm"},
        },
    ),
    "defects": (
        DATASETS / "vision-defect" / "magnetic-tile-defect",
        {"data": {"source": "magnetic-tile", "test_good_fraction": 0.3}, "train": {"epochs": 3}},
    ),
}


def _handbook_window(tmp: Path) -> Path:
    """The handbook rows the protocol reads: 30 days of feature warm-up before training to the end of the test week."""
    frame = pd.read_csv(HANDBOOK, parse_dates=["TX_DATETIME"])
    keep = (frame["TX_DATETIME"] >= "2018-06-18") & (frame["TX_DATETIME"] < "2018-08-17")
    out = tmp / "transactions.csv"
    frame[keep].to_csv(out, index=False)
    return out


def _run_stages(domain: str, section: dict[str, Any], root: Path) -> dict[str, float]:
    """The domain's stages in-process in `root`; the acquired table passes as if gated (no gate cost here)."""
    import shutil

    import yaml

    from domains.common import paths
    from domains.common.stages import TABLE, VALIDATED, run_stage

    (root / "registry").mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump({domain: section}, sort_keys=False))
    seconds = {}
    for stage in STAGES:
        began = time.perf_counter()
        run_stage(stage, domain, root)
        seconds[stage] = round(time.perf_counter() - began, 1)
        if stage == "acquire":
            validate = paths.stage_dir(root, domain, "validate")
            validate.mkdir(parents=True)
            shutil.copy(paths.stage_dir(root, domain, "acquire") / TABLE, validate / VALIDATED)
            (validate / paths.GATE_FILE).write_text(json.dumps({"verdict": "pass", "checks": []}))
    return seconds


def bench(domain: str) -> dict[str, Any] | None:
    from domains.common import assess, units
    from domains.common.registry import load_params, load_spec

    data, overrides = SETUPS[domain]
    if not data.exists():
        print(f"skipped: {data} not found (real data is not shipped with the project)")
        return None
    with tempfile.TemporaryDirectory(prefix="aiflow-bench-intervals-") as tmp:
        path = _handbook_window(Path(tmp)) if domain == "fraud" else data
        section = domain_section(domain, {**overrides, "data": {**overrides["data"], "path": str(path)}})
        root = Path(tmp) / "root"
        root.mkdir()
        seconds = _run_stages(domain, section, root)
        evaluate_dir = root / "data" / domain / "evaluate"
        frame = pd.read_parquet(evaluate_dir / units.PREDICTIONS_FILE)
        metrics = json.loads((evaluate_dir / "metrics.json").read_text())
        decision = json.loads((evaluate_dir / "decision.json").read_text())
        stage_s = json.loads((evaluate_dir / "_stage.json").read_text())["seconds"]
        spec, params = load_spec(domain), load_params(root, domain)

    primary = decision["primary_metric"]
    kind = spec.metric.intervals[primary]
    candidate = params.evaluate.candidate
    higher = spec.metric.higher_is_better.get(primary, True)
    others = sorted(
        (
            m
            for m in units.models_in(frame)
            if m != candidate and primary in metrics.get(m, {}) and units.weighted_metric(frame, m, kind) is not None
        ),
        key=lambda m: -metrics[m][primary] if higher else metrics[m][primary],
    )  # the closest rival first
    timings = {}
    began = time.perf_counter()
    assess.with_intervals(metrics, frame, spec, params)
    timings["intervals_s"] = round(time.perf_counter() - began, 3)
    began = time.perf_counter()
    verdict = assess.slices(frame, spec, params)
    timings["slices_s"] = round(time.perf_counter() - began, 3)
    began = time.perf_counter()
    paired = (
        units.paired(frame, candidate, frame, others[0], primary, kind, higher, params.evaluate.resamples, params.seed)
        if others
        else None
    )
    timings["paired_s"] = round(time.perf_counter() - began, 3)
    bootstrap_s = round(sum(timings.values()), 3)
    # The stage's own seconds include the bootstrap: the rest is what evaluate costs without it.
    share = bootstrap_s / stage_s if stage_s else float("nan")

    models = {
        m: {
            "value": v[primary],
            "ci_low": v.get(f"{primary}_ci_low"),
            "ci_high": v.get(f"{primary}_ci_high"),
            "width": (v[f"{primary}_ci_high"] - v[f"{primary}_ci_low"]) if f"{primary}_ci_low" in v else None,
        }
        for m, v in metrics.items()
        if primary in v
    }
    result = {
        "domain": domain,
        "data": str(data),
        "primary": primary,
        "resamples": params.evaluate.resamples,
        "test_rows": len(frame),
        "test_units": int(frame["unit"].nunique()),
        "models": models,
        "paired": None
        if paired is None
        else {
            "candidate": candidate,
            "against": others[0],
            "difference": paired.difference,
            "ci_low": paired.low,
            "ci_high": paired.high,
        },
        "worst_slice": verdict.worst if verdict else None,
        "protected_gaps": verdict.gaps if verdict else [],
        "evaluate_stage_s": stage_s,
        **timings,
        "bootstrap_s": bootstrap_s,
        "bootstrap_share_of_evaluate": round(share, 3),
        "goal_share": GOAL_SHARE,
        "goal_met": bool(share < GOAL_SHARE),
        "stage_s": seconds,
        "label_positives": int(frame["label"].sum()) if "label" in frame else None,
    }
    rows = [[m, v["value"], v["ci_low"], v["ci_high"], v["width"]] for m, v in models.items()]
    print_table(
        f"{domain}: {primary}, 95 % interval over {result['test_units']} units ({len(frame)} rows), "
        f"{params.evaluate.resamples} resamples",
        ["model", primary, "low", "high", "width"],
        rows,
    )
    if paired is not None:
        print(f"paired {candidate} - {others[0]}: {paired.difference:+.4f} [{paired.low:+.4f}, {paired.high:+.4f}]")
    print(
        f"bootstrap {bootstrap_s:.2f} s (intervals {timings['intervals_s']}, slices {timings['slices_s']}, paired "
        f"{timings['paired_s']}) of an evaluate stage of {stage_s:.1f} s: {share:.1%} "
        f"({'met' if share < GOAL_SHARE else 'MISSED'}, goal < {GOAL_SHARE:.0%})"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.intervals", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", choices=[*SETUPS, "all"])
    name = parser.parse_args(argv).name
    run_benchmarks("intervals", {d: (lambda d=d: bench(d)) for d in SETUPS}, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
