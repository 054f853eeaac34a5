"""Promotion with the default params on the real data sets: does the policy (gate warnings, baselines,
thresholds) let a candidate that beats its baselines through, and say why when it keeps one?

    python -m benchmarks.promotion recsys fraud medical sentiment defects [--through validate]

Each domain runs acquire..evaluate in-process in a throwaway root on its data set in ../shared/datasets,
with this checkout's params.yaml for the domain and only the data keys (and, to fit a few minutes on 2
cores, the training lengths in FIT) changed; `--through validate` stops after the gate. Writes
results/promotion_<domain>.json: the gate's verdict and non-passing checks, every model's promotion
metric, the decision and its reason, the overrides used. Skips a data set that is absent.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from benchmarks.common import DATASETS, context, domain_section, save, stage_root
from domains.common import paths
from domains.common.paths import STAGES

DATA = {
    "recsys": {"data": {"source": "ml-100k", "path": str(DATASETS / "recommender/ml-100k")}},
    "fraud": {
        "data": {"source": "handbook", "path": str(DATASETS / "finance-fraud/handbook-simulated/transactions.csv.gz")}
    },
    "medical": {
        "data": {
            "source": "medmnist",
            "path": str(DATASETS / "medical-imaging/medmnist/pneumoniamnist.npz"),
            "classes": ["normal", "pneumonia"],
        },
        "prepare": {"image_size": 28},
    },
    "sentiment": {
        "data": {"source": "aclimdb", "path": str(DATASETS / "nlp-sentiment/imdb-aclImdb-v1/aclImdb_v1_labeled.tar.gz")}
    },
    "defects": {"data": {"source": "magnetic-tile", "path": str(DATASETS / "vision-defect/magnetic-tile-defect")}},
}
# Shorter training than the defaults, so each run fits a few minutes on a busy 2-core machine; the models that
# decide (candidate and baselines) are all kept. The full-length figures are the domain benchmarks'.
FIT = {
    "recsys": {"train": {"surprise_models": ["baseline_only"], "ranking_models": ["ease"]}},
    "fraud": {"train": {"epochs": 3, "hgb_max_iter": 20}},
    "medical": {"train": {"epochs": 1, "hgb_max_iter": 20}},
    "sentiment": {},
    "defects": {"train": {"epochs": 5}},
}


def promotion(domain: str, through: str) -> dict[str, Any] | None:
    overrides = {**DATA[domain], **FIT[domain]}
    if not (DATASETS / DATA[domain]["data"]["path"]).exists():
        print(f"skipped {domain}: {DATA[domain]['data']['path']} is absent")
        return None
    stages = STAGES[: STAGES.index(through) + 1]
    with stage_root(domain, domain_section(domain, overrides), stages) as (root, seconds):
        gate = json.loads(paths.gate_file(root, domain).read_text())
        result: dict[str, Any] = {
            "overrides": overrides,
            "stage_seconds": seconds,
            "gate_verdict": gate["verdict"],
            "rows_in": gate["rows_in"],
            "rows_quarantined": gate["rows_quarantined"],
            "not_passed": [
                {k: c[k] for k in ("name", "severity", "failing")} for c in gate["checks"] if not c["passed"]
            ],
        }
        if paths.decision_file(root, domain).is_file():
            decision = json.loads(paths.decision_file(root, domain).read_text())
            metrics = json.loads(paths.metrics_file(root, domain).read_text())
            primary = decision["primary_metric"]
            result.update(
                primary=primary,
                candidate=decision["candidate"],
                decision=decision["decision"],
                reason=decision["reason"],
                gate_warnings=decision["gate_warnings"],
                scores={m: v[primary] for m, v in metrics.items() if primary in v},
            )
    print(
        json.dumps({k: result.get(k) for k in ("gate_verdict", "not_passed", "scores", "decision", "reason")}, indent=1)
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.promotion", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("domains", nargs="+", choices=list(DATA))
    parser.add_argument("--through", default="evaluate", choices=["validate", "evaluate"])
    args = parser.parse_args(argv)
    for domain in args.domains:
        print(f"== {domain} promotion ==", flush=True)
        before = context()
        result = promotion(domain, args.through)
        if result is not None:
            save(f"promotion_{domain}" + ("_gate" if args.through == "validate" else ""), result, before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
