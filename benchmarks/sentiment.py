"""Benchmarks of the NLP sentiment domain. From the repository root:

    python -m benchmarks.sentiment imdb     # IMDB (aclImdb v1), 25,000 / 25,000, through the domain's stages: every model
    python -m benchmarks.sentiment select   # how the IMDB settings below were chosen: a grid on a validation slice of train
    python -m benchmarks.sentiment repro    # cold and no-op `dvc repro report@sentiment` at the default size

`imdb` runs the domain's own stages (acquire from the .tar.gz without unpacking it, the gate,
prepare, train, evaluate) on ../shared/datasets/nlp-sentiment/imdb-aclImdb-v1/aclImdb_v1_labeled.tar.gz
(skipped when absent), with the `sentiment:` section of params.yaml and the overrides in IMDB below.
All 25,000 test reviews are scored; the models are fitted on 22,500 training reviews, the other
2,500 (a seeded, stratified slice) being the validation slice. `select` fits each setting of a
small grid on those 22,500 reviews and scores it on the 2,500: the test reviews are never read.
Each prints a table and writes benchmarks/results/sentiment_<name>.json (git-ignored).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import DATASETS, bench_repro, domain_section, main_for, print_table, stage_root

IMDB_ARCHIVE = DATASETS / "nlp-sentiment" / "imdb-aclImdb-v1" / "aclImdb_v1_labeled.tar.gz"
# Test accuracy on IMDB's 25,000 test reviews, as published.
PUBLISHED = {
    "NBSVM-bigram (Wang & Manning 2012)": 0.9122,
    "NBSVM-trigram (Mesnil et al. 2015)": 0.9187,
    "fastText-style bigrams": 0.9056,
    "DistilBERT, pretrained (not comparable: no pretraining here)": 0.9282,
}
GOALS = {"best": 0.915, "torch": 0.906, "torch_fit_s": 300.0}
# What the benchmark changes in params.yaml's sentiment section (the rest is the domain's defaults).
# train: the settings `select` chose on the validation slice: per model the highest validation accuracy,
# the torch model's among the settings that trained in under GOALS["torch_fit_s"] seconds on this machine.
IMDB = {
    "data": {"source": "aclimdb", "path": str(IMDB_ARCHIVE)},
    # IMDB holds 123 reviews in both train and test, and 295 repeats within a split (the gate finds them):
    # report them rather than stop or set them aside, so that all 25,000 test reviews are scored, as published.
    "gate": {"severity": {"split_leakage": "warn"}, "max_warnings": 10},
    "train": {
        "logreg_c": 30.0,
        "tfidf_ngram_max": 2,
        "nbsvm_c": 1.0,
        "nbsvm_ngram_max": 3,
        "fasttext_ngram_max": 3,
        "fasttext_buckets": 1 << 20,
        "fasttext_dim": 10,
        "epochs": 5,
        "patience": 2,
        "lr": 0.02,
        "batch_size": 256,
    },
}
SELECTION_GRID: dict[str, list[dict[str, Any]]] = {
    "tfidf_logreg": [{"tfidf_ngram_max": n, "logreg_c": c} for n, c in itertools.product((2, 3), (3.0, 10.0, 30.0))],
    "nbsvm": [{"nbsvm_ngram_max": n, "nbsvm_c": c} for n, c in itertools.product((2, 3), (0.3, 1.0, 3.0))],
    "fasttext": [
        {"fasttext_ngram_max": n, "lr": lr, "batch_size": b}
        for n, (lr, b) in itertools.product((2, 3), ((0.02, 256), (0.01, 64)))
    ],
}


def imdb_section() -> dict:
    return domain_section("sentiment", IMDB)


def bench_imdb() -> dict[str, Any] | None:
    """IMDB through the domain's stages: test accuracy, fit and predict seconds of every model."""
    if not IMDB_ARCHIVE.is_file():
        print(f"skipped: {IMDB_ARCHIVE} not found (IMDB is not shipped with the project)")
        return None
    section = imdb_section()
    with stage_root("sentiment", section, ("acquire", "validate", "prepare", "train", "evaluate")) as (root, seconds):
        data = root / "data" / "sentiment"
        metrics = json.loads((data / "evaluate" / "metrics.json").read_text())
        history = json.loads((data / "train" / "history.json").read_text())
        gate = json.loads((data / "validate" / "gate.json").read_text())
        profile = json.loads((data / "prepare" / "profile.json").read_text())

    result = {
        "params": section,
        "stage_s": seconds,
        "metrics": metrics,
        "profile": profile,
        "gate": {
            "verdict": gate["verdict"],
            "warnings": {c["name"]: c["failing"] for c in gate["checks"] if not c["passed"]},
        },
        "fasttext": {
            "epochs_run": len(history["epochs"]),
            "best_epoch": history["best_epoch"],
            "epoch_s": [round(e["seconds"], 1) for e in history["epochs"]],
            "device": history["device"],
        },
    }
    rows: list[list[Any]] = [[f"published: {name}", acc, None, None] for name, acc in PUBLISHED.items()]
    rows += [
        [f"ours: {name}", m["accuracy"], m["fit_seconds"], m["predict_seconds"]]
        for name, m in sorted(metrics.items(), key=lambda kv: kv[1]["accuracy"])
    ]
    print_table(
        f"IMDB test reviews ({profile['documents']['test']}): accuracy, fit seconds ({profile['documents']['train']} "
        "training reviews), predict seconds (all test reviews)",
        ["model", "accuracy", "fit s", "predict s"],
        rows,
    )
    best = max(metrics, key=lambda m: metrics[m]["accuracy"])
    torch_model = metrics["fasttext"]
    print(
        f"goals: best >= {GOALS['best']}: {_met(metrics[best]['accuracy'] >= GOALS['best'])} ({best} "
        f"{metrics[best]['accuracy']:.4f}); torch >= {GOALS['torch']}: {_met(torch_model['accuracy'] >= GOALS['torch'])} "
        f"({torch_model['accuracy']:.4f}); torch trained in < {GOALS['torch_fit_s']:.0f} s: "
        f"{_met(torch_model['fit_seconds'] < GOALS['torch_fit_s'])} ({torch_model['fit_seconds']:.0f} s)"
    )
    print(f"stages (s): {seconds}; gate {gate['verdict']}: {result['gate']['warnings']}")
    return result


def bench_select() -> dict[str, Any] | None:
    """Each setting of SELECTION_GRID fitted on IMDB's 22,500 training reviews and scored on the 2,500
    validation reviews; the chosen one per model, and ensembles of the chosen, by validation accuracy."""
    if not IMDB_ARCHIVE.is_file():
        print(f"skipped: {IMDB_ARCHIVE} not found")
        return None
    import numpy as np
    import pandas as pd

    from domains.common.contract import TrainEnv
    from domains.common.trainer import seed_everything
    from domains.sentiment.checks import LABEL_INDEX
    from domains.sentiment.features import load_features
    from domains.sentiment.params import SentimentParams
    from domains.sentiment.pipeline import DOCUMENTS
    from domains.sentiment.train import make_model

    section = imdb_section()
    rows, best_val = [], {}
    with stage_root("sentiment", section, ("acquire", "validate", "prepare")) as (root, _):
        prepared = root / "data" / "sentiment" / "prepare"
        documents = pd.read_parquet(prepared / DOCUMENTS)
        counts, vocabulary = load_features(prepared)
        split, y = documents["split"].to_numpy(), documents[LABEL_INDEX].to_numpy()
        train, val = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
        base = SentimentParams.model_validate(section)
        seed_everything(base.seed, base.train.deterministic, base.train.num_threads)
        for name, grid in SELECTION_GRID.items():
            for setting in grid:
                p = base.model_copy(update={"train": base.train.model_copy(update=setting)})
                model = make_model(name, p, vocabulary, TrainEnv(root / "checkpoints", json.dumps(setting)))
                began = time.perf_counter()
                model.fit(counts[train], y[train], counts[val], y[val])
                fit_s = time.perf_counter() - began
                p_val = model.predict_proba(counts[val])[:, 1]
                accuracy = float(np.mean((p_val >= 0.5) == y[val]))
                rows.append({"model": name, **setting, "val_accuracy": accuracy, "fit_s": round(fit_s, 1)})
                print(f"  {name:13s} {setting}  validation accuracy {accuracy:.4f}  fit {fit_s:.1f} s", flush=True)
                in_budget = name != "fasttext" or fit_s < GOALS["torch_fit_s"]
                if in_budget and accuracy > best_val.get(name, (-1.0,))[0]:
                    best_val[name] = (accuracy, setting, p_val)
    ensembles = []
    for members in [("nbsvm", "fasttext"), ("tfidf_logreg", "nbsvm", "fasttext"), ("tfidf_logreg", "fasttext")]:
        p_val = np.mean([best_val[m][2] for m in members], axis=0)
        ensembles.append({"members": list(members), "val_accuracy": float(np.mean((p_val >= 0.5) == y[val]))})
    result = {
        "validation_reviews": int(len(val)),
        "training_reviews": int(len(train)),
        "grid": rows,
        "chosen": {m: {"setting": s, "val_accuracy": a} for m, (a, s, _) in best_val.items()},
        "ensembles": ensembles,
    }
    print_table(
        f"Chosen setting per model (highest validation accuracy; the torch model's among those trained in "
        f"under {GOALS['torch_fit_s']:.0f} s)",
        ["model", "setting", "val accuracy"],
        [[m, json.dumps(s), a] for m, (a, s, _) in best_val.items()],
    )
    print_table(
        "Ensembles of the best settings (mean probability)",
        ["members", "val accuracy"],
        [[" + ".join(e["members"]), e["val_accuracy"]] for e in ensembles],
    )
    return result


def bench_repro_sentiment() -> dict[str, Any]:
    """Cold `dvc repro report@sentiment` at the default size, then a no-op one."""
    return bench_repro("sentiment", cold_target_s=120.0)


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


BENCHMARKS: dict[str, Callable[[], dict[str, Any] | None]] = {
    "imdb": bench_imdb,
    "select": bench_select,
    "repro": bench_repro_sentiment,
}


def main(argv: list[str] | None = None) -> int:
    return main_for("sentiment", BENCHMARKS, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
