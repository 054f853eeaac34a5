"""Benchmarks of the fraud domain. From the repository root:

    python -m benchmarks.fraud repro      # cold and no-op `dvc repro` in a throwaway copy of the repo
    python -m benchmarks.fraud gate       # the data-quality gate on ~1M synthetic transactions
    python -m benchmarks.fraud handbook   # the handbook's baseline protocol on its published data
    python -m benchmarks.fraud weeks      # its model-selection protocol: four test weeks, mean and sd
    python -m benchmarks.fraud gpu        # MLP seconds per epoch, CPU vs CUDA
    python -m benchmarks.fraud all        # all of them, one after the other

Each prints a table and writes benchmarks/results/fraud_<name>.json (committed where a README quotes it). Libraries
heavier than numpy are imported inside the benchmarks: the gate benchmark times their imports.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.common import (
    DATASETS,
    ROOT,
    Clock,
    bench_repro,
    best_of,
    print_table,
    run,
    run_benchmarks,
    subprocess_env,
    verdict,
)

if TYPE_CHECKING:
    from domains.fraud.params import FraudParams, FraudTrainParams

HANDBOOK_DATA = DATASETS / "finance-fraud" / "handbook-simulated" / "transactions.csv.gz"
TARGETS = {"repro_cold_s": 180.0, "repro_noop_s": 5.0, "gate_s": 10.0}


def fraud_params() -> FraudParams:
    """The fraud section of this checkout's params.yaml, validated."""
    from domains.common.registry import load_params

    return load_params(ROOT, "fraud")  # type: ignore[return-value]


# --- repro: the whole pipeline under DVC --------------------------------------------------------


def bench_repro_fraud() -> dict[str, Any]:
    """Cold `dvc repro` of the fraud pipeline with this checkout's params.yaml, then a no-op one."""
    return bench_repro("fraud", TARGETS["repro_cold_s"], TARGETS["repro_noop_s"])


# --- gate: throughput on a million transactions -------------------------------------------------

GATE_SYNTHETIC = {"n_customers": 3000, "n_terminals": 10000, "n_days": 175}  # ~1.0M transactions


def bench_gate(repeats: int = 3) -> dict[str, Any]:
    """The gate on ~1M synthetic transactions: end to end, pandera and GX apart, import costs apart."""
    from domains.fraud.loaders import handbook_to_canonical
    from domains.fraud.params import SyntheticParams
    from domains.fraud.synthetic import generate_transactions

    params = fraud_params()
    clock = Clock()
    with clock("generate"):
        raw = generate_transactions(SyntheticParams(**{**params.synthetic.model_dump(), **GATE_SYNTHETIC}), params.seed)
    with clock("to_canonical"):
        table = handbook_to_canonical(raw)
    with tempfile.TemporaryDirectory(prefix="aiflow-bench-gate-") as tmp:
        path = Path(tmp) / "table.parquet"
        table.to_parquet(path)
        # A fresh interpreter, so that import costs are measured, not hidden by this process's imports.
        _, out = run(
            [sys.executable, "-m", "benchmarks.fraud", "gate-worker", str(path), "--repeats", str(repeats)],
            ROOT,
            subprocess_env(),
        )
    worker = json.loads(out.strip().splitlines()[-1])
    rows_n = len(table)
    result = {
        "rows": rows_n,
        "frauds": int(table["tx_fraud"].sum()),
        "synthetic": GATE_SYNTHETIC,
        "prepare_s": clock.laps,
        "repeats": repeats,
        **worker,
        "target_s": TARGETS["gate_s"],
    }

    imports, first, warm = worker["import_s"], worker["first_call_s"], worker["best_s"]
    cold_total = round(sum(imports.values()) + first, 3)
    result["fresh_process_total_s"] = cold_total
    rows: list[list[Any]] = [[f"import {name}", seconds, ""] for name, seconds in imports.items()]
    gate_s, docs_s = warm["run_gate"], warm["run_gate + Data Docs"]
    rows += [
        ["run_gate + Data Docs, first call in the process", first, verdict(first, TARGETS["gate_s"])],
        [
            f"run_gate + Data Docs (as the validate stage), best of {repeats}",
            docs_s,
            verdict(docs_s, TARGETS["gate_s"]),
        ],
        [f"run_gate without Data Docs, best of {repeats}", gate_s, verdict(gate_s, TARGETS["gate_s"])],
        ["  pandera: schema.validate (run_gate does it twice)", warm["pandera"], ""],
        ["  great_expectations: 5 expectations", warm["great_expectations"], ""],
        ["  great_expectations + Data Docs", warm["great_expectations + Data Docs"], ""],
        ["fresh process: imports + first run_gate", cold_total, ""],
    ]
    print_table(
        f"gate on {rows_n} transactions (seconds; target < {TARGETS['gate_s']:.0f} s)", ["", "seconds", "target"], rows
    )
    print(
        f"verdict {worker['verdict']}, {worker['rows_quarantined']} quarantined, {rows_n / docs_s:,.0f} rows/s "
        f"as the stage runs it; generating the table took {clock.laps['generate']} s"
    )
    return result


def gate_worker(path: Path, repeats: int) -> dict[str, Any]:
    """In a fresh process: import costs, the first run_gate call (as the validate stage makes it,
    Data Docs included), then best-of warm timings."""
    imports = Clock()  # in order: each lap counts only what the earlier ones did not import
    with imports("pandas + pandera"):
        import pandas as pd
        import pandera.pandas  # noqa: F401
        from pandera.errors import SchemaErrors
    with imports("domains.common.gate + domains.fraud.checks"):
        from domains.common.gate import resolve_severities, run_gate, run_great_expectations
        from domains.fraud.checks import gate_suite
    with imports("great_expectations"):
        import great_expectations
        import great_expectations.expectations  # noqa: F401

    table = pd.read_parquet(path)
    params = fraud_params()
    suite = gate_suite(params)
    severities = resolve_severities(suite, params.gate)

    def docs() -> Path:  # a fresh Data Docs folder per call, as each stage run starts empty
        return Path(tempfile.mkdtemp(prefix="docs-", dir=path.parent))

    began = time.perf_counter()
    result, kept, _ = run_gate(table, suite, params.gate, docs_dir=docs())
    first = round(time.perf_counter() - began, 3)

    def pandera_only() -> None:
        with contextlib.suppress(SchemaErrors):  # quarantine-level failures raise: still part of the cost
            suite.schema.validate(table, lazy=True)

    return {
        "great_expectations_version": great_expectations.__version__,
        "verdict": result.verdict,
        "rows_quarantined": result.rows_quarantined,
        "failed_checks": [f"{c.name} ({c.severity})" for c in result.checks if not c.passed],
        "import_s": imports.laps,
        "first_call_s": first,
        "best_s": {
            "run_gate + Data Docs": best_of(lambda: run_gate(table, suite, params.gate, docs_dir=docs()), repeats),
            "run_gate": best_of(lambda: run_gate(table, suite, params.gate), repeats),
            "pandera": best_of(pandera_only, repeats),
            "great_expectations": best_of(
                lambda: run_great_expectations(kept, suite.expectations, severities, None), repeats
            ),
            "great_expectations + Data Docs": best_of(
                lambda: run_great_expectations(kept, suite.expectations, severities, docs()), repeats
            ),
        },
    }


# --- handbook: the baseline protocol of Le Borgne et al. on their simulated data ----------------

# Test figures of the handbook: chapter 3.4's baselines on this protocol's test week. The tuned
# XGBoost is chapter 5's model selection, whose test figure averages four weekly prequential test
# folds (training from 2018-08-15 backwards), so it is not measured on the same week.
HANDBOOK = {
    "logistic regression": {"auroc": 0.871, "average_precision": 0.606, "card_precision": 0.291},
    "random forest": {"auroc": 0.867, "average_precision": 0.658, "card_precision": 0.287},
    "XGBoost": {"auroc": 0.862, "average_precision": 0.639, "card_precision": 0.273},
    "XGBoost tuned": {"average_precision": 0.687},
}
TRAIN_START = "2018-07-25"  # train 07-25..31, delay 08-01..07, test 08-08..14
VALID_START = "2018-07-11"  # model selection: train 07-11..17, delay, validate 07-25..31
WEEK = DELAY = 7
TOP_K = 100
WINDOWS = [1, 7, 30]
HGB_GRID = {
    "learning_rate": (0.05, 0.1),
    "max_leaf_nodes": (7, 15),
    "min_samples_leaf": (50, 200),
    "l2_regularization": (0.0, 10.0),
}
HGB_ITERS = (100, 200, 400)  # every grid point is fitted once and scored at each of these sizes
# Earlier runs, judged on validation only: batch size 2048 gave a lower AP in 6 of 8 pairs with 512
# (dropped, to keep the benchmark near 10 minutes); with a cap of 30 epochs the selected
# configuration was still improving at epoch 30 (cap raised to 50).
MLP_GRID = {"hidden": ([64, 32], [128, 64]), "lr": (1e-3, 3e-3), "dropout": (0.1, 0.3), "batch_size": (512,)}
MLP_FIXED = {"epochs": 50, "patience": 4, "num_threads": 1}  # epochs: a cap; early stopping picks the epoch
# One thread per model: on a 2-core machine doing anything else, a second OpenMP thread made
# HistGradientBoosting 4x and the MLP up to 13x slower (measured), rather than faster.
THREADS = 1


@dataclass
class Transactions:
    """The handbook's 15 features per gated transaction, with what the split and metrics need."""

    x: np.ndarray  # float32 (rows, 15)
    y: np.ndarray
    day: np.ndarray  # datetime64[D]
    card: np.ndarray

    def days(self, start: str, first: int, count: int) -> np.ndarray:
        s = np.datetime64(start, "D") + first
        return (self.day >= s) & (self.day < s + count)


def grid(space: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(space, values)) for values in itertools.product(*space.values())]


def handbook_split(tx: Transactions, start: str) -> tuple[np.ndarray, np.ndarray]:
    """The handbook's get_train_test_set: a training week, a 7-day delay, a test week.

    Cards already known to be compromised are left out of each test day: the frauds of the
    training week and of the delay days whose labels are known by then (those up to test day - 8).
    """
    train = tx.days(start, 0, WEEK)
    known = train & (tx.y == 1)
    test = np.zeros(len(tx.y), dtype=bool)
    for d in range(WEEK):
        known |= tx.days(start, WEEK + d - 1, 1) & (tx.y == 1)
        test |= tx.days(start, WEEK + DELAY + d, 1) & ~np.isin(tx.card, tx.card[known])
    return train, test


def handbook_scores(tx: Transactions, mask: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from domains.fraud.metrics import score_metrics

    y, day, card = tx.y[mask], tx.day[mask], tx.card[mask]
    m = score_metrics(y, scores, day, card, TOP_K, 0.01)
    return {
        "auroc": m["auroc"],
        "average_precision": m["average_precision"],
        "card_precision": m["card_precision_at_k"],
        "recall_at_1pct_fpr": m["recall_at_fpr"],
    }


def load_handbook(params: FraudParams, clock: Clock) -> tuple[Transactions, dict[str, Any]]:
    """Read, gate, and featurise the handbook's transactions (customer and terminal windows 1/7/30 days)."""
    from domains.common.gate import run_gate
    from domains.fraud.checks import gate_suite
    from domains.fraud.features import build_features, feature_columns
    from domains.fraud.loaders import read_handbook

    with clock("read"):
        table = read_handbook(HANDBOOK_DATA)
    with clock("gate"):
        result, kept, _ = run_gate(table, gate_suite(params), params.gate)
    gate = {
        "verdict": result.verdict,
        "rows_in": result.rows_in,
        "rows_passed": result.rows_passed,
        "rows_quarantined": result.rows_quarantined,
        "failed_checks": [f"{c.name} ({c.severity}): {c.detail}" for c in result.checks if not c.passed],
    }
    if result.verdict == "block":
        raise RuntimeError(f"the gate blocked the handbook data: {result.reasons}")
    with clock("features"):
        kept = kept.sort_values(["tx_datetime", "transaction_id"], kind="stable").reset_index(drop=True)
        features = build_features(kept, WINDOWS, WINDOWS, DELAY)
        names = feature_columns(features)
    tx = Transactions(
        features[names].to_numpy(np.float32),
        kept["tx_fraud"].to_numpy(),
        kept["tx_datetime"].to_numpy().astype("datetime64[D]"),
        kept["customer_id"].to_numpy(),
    )
    return tx, {**gate, "features": names}


def fit_logreg(tx: Transactions, train: np.ndarray, c: float, balanced: bool):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    weights = "balanced" if balanced else None
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=c, class_weight=weights, max_iter=2000, random_state=0)
    )
    return model.fit(tx.x[train], tx.y[train])


def fit_hgb(tx: Transactions, train: np.ndarray, seed: int, **config: Any):
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(early_stopping=False, random_state=seed, **config)
    return model.fit(tx.x[train], tx.y[train])


def fit_mlp(tx: Transactions, start: str, t: FraudTrainParams, seed: int, workdir: Path) -> tuple[Any, Any]:
    """train_mlp on the training week from `start`, its last day held out for early stopping."""
    from domains.common.contract import TrainEnv
    from domains.fraud.train import train_mlp

    fit, stop = tx.days(start, 0, WEEK - 1), tx.days(start, WEEK - 1, 1)
    env = TrainEnv(workdir, fingerprint=f"{start}-{t.model_dump_json()}")
    with contextlib.redirect_stderr(io.StringIO()):  # one line per epoch otherwise
        return train_mlp(t, seed, tx.x[fit], tx.y[fit], tx.x[stop], tx.y[stop], env)


def mlp_scores(model: Any, x: np.ndarray) -> np.ndarray:
    import torch

    from domains.common.trainer import predict

    return predict(model, torch.from_numpy(x))


def search_hgb(
    tx: Transactions, seed: int, starts: tuple[str, ...] = (VALID_START,), space: dict[str, tuple[Any, ...]] = HGB_GRID
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """HGB grid on the validation folds from `starts`, by mean average precision: rows best first,
    the best's scores on each fold."""
    from sklearn.metrics import average_precision_score

    folds = [handbook_split(tx, start) for start in starts]
    rows: list[dict[str, Any]] = []
    best: list[np.ndarray] = []
    for config in grid(space):
        aps: dict[int, list[float]] = {n: [] for n in HGB_ITERS}
        scores: dict[int, list[np.ndarray]] = {n: [] for n in HGB_ITERS}
        for train, valid in folds:
            model = fit_hgb(tx, train, seed, max_iter=max(HGB_ITERS), **config)
            for n, proba in enumerate(model.staged_predict_proba(tx.x[valid]), start=1):
                if n in HGB_ITERS:
                    aps[n].append(float(average_precision_score(tx.y[valid], proba[:, 1])))
                    scores[n].append(proba[:, 1])
        for n in HGB_ITERS:
            rows.append({**config, "max_iter": n, "val_ap": float(np.mean(aps[n])), "val_ap_folds": aps[n]})
            best = scores[n] if rows[-1]["val_ap"] >= max(r["val_ap"] for r in rows) else best
    return sorted(rows, key=lambda r: -r["val_ap"]), best


def search_mlp(
    tx: Transactions,
    seed: int,
    workdir: Path,
    starts: tuple[str, ...] = (VALID_START,),
    space: dict[str, tuple[Any, ...]] = MLP_GRID,
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """MLP grid on the validation folds from `starts`, by mean average precision: rows best first,
    the best's scores on each fold."""
    from sklearn.metrics import average_precision_score

    from domains.fraud.params import FraudTrainParams

    folds = [(start, handbook_split(tx, start)[1]) for start in starts]
    rows: list[dict[str, Any]] = []
    best: list[np.ndarray] = []
    for config in grid(space):
        aps, scores, best_epochs, epochs_run = [], [], [], []
        for start, valid in folds:
            model, history = fit_mlp(tx, start, FraudTrainParams(**MLP_FIXED, **config), seed, workdir)
            scores.append(mlp_scores(model, tx.x[valid]))
            aps.append(float(average_precision_score(tx.y[valid], scores[-1])))
            best_epochs.append(history.best_epoch)
            epochs_run.append(len(history.epochs))
        rows.append(
            {
                **config,
                "best_epochs": best_epochs,
                "epochs_run": epochs_run,
                "val_ap": float(np.mean(aps)),
                "val_ap_folds": aps,
            }
        )
        best = scores if rows[-1]["val_ap"] >= max(r["val_ap"] for r in rows) else best
        print(f"  mlp {config}: val AP {rows[-1]['val_ap']:.3f}, best epochs {best_epochs} of {epochs_run}", flush=True)
    return sorted(rows, key=lambda r: -r["val_ap"]), best


def mean_rank(*scores: np.ndarray) -> np.ndarray:
    """An ensemble that needs no calibration: the mean of each model's ranks."""
    from scipy.stats import rankdata

    return np.mean([rankdata(s) for s in scores], axis=0)


def compare(ours: dict[str, dict[str, float]]) -> dict[str, dict[str, str]]:
    """For each of our models: 'beats' / 'ties' / 'below' each handbook figure (at its 3 decimals)."""
    out: dict[str, dict[str, str]] = {}
    for model, figures in ours.items():
        out[model] = {}
        for ref, theirs in HANDBOOK.items():
            for metric, value in theirs.items():
                mine = round(figures[metric], 3)
                out[model][f"{ref} {metric}"] = "beats" if mine > value else "ties" if mine == value else "below"
    return out


def bench_handbook() -> dict[str, Any] | None:
    """The handbook's baseline protocol on its simulated data; our models, default and tuned."""
    if not HANDBOOK_DATA.is_file():
        print(f"skipped: dataset not found at {HANDBOOK_DATA}")
        return None
    from threadpoolctl import threadpool_limits

    with threadpool_limits(THREADS), tempfile.TemporaryDirectory(prefix="aiflow-bench-mlp-") as tmp:
        result = run_handbook(Path(tmp))
    print_handbook(result)
    return result


def run_handbook(workdir: Path) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score

    from domains.fraud.params import FraudTrainParams

    params, defaults, clock = fraud_params(), FraudTrainParams(num_threads=THREADS), Clock()
    seed = params.seed
    tx, data = load_handbook(params, clock)
    train, test = handbook_split(tx, TRAIN_START)
    data["train"] = {"rows": int(train.sum()), "frauds": int(tx.y[train].sum())}
    data["test"] = {"rows": int(test.sum()), "frauds": int(tx.y[test].sum())}
    print(
        f"gate {data['verdict']} ({data['rows_quarantined']} quarantined); train {data['train']}, test {data['test']}"
    )

    with clock("search hgb"):
        hgb_grid, hgb_valid = search_hgb(tx, seed)
    print(f"  hgb: best of {len(hgb_grid)} on validation: {hgb_grid[0]}", flush=True)
    with clock("search mlp"):
        mlp_grid, mlp_valid = search_mlp(tx, seed, workdir)
    hgb_best = {k: hgb_grid[0][k] for k in [*HGB_GRID, "max_iter"]}
    mlp_best = {**MLP_FIXED, **{k: mlp_grid[0][k] for k in MLP_GRID}}
    valid = handbook_split(tx, VALID_START)[1]
    validation_ap = {
        "hgb, tuned": hgb_grid[0]["val_ap"],
        "mlp, tuned": mlp_grid[0]["val_ap"],
        "hgb + mlp, mean rank": float(average_precision_score(tx.y[valid], mean_rank(hgb_valid[0], mlp_valid[0]))),
    }

    x = tx.x[test]
    fits: dict[str, Callable[[], np.ndarray]] = {
        "logreg, handbook recipe": lambda: fit_logreg(tx, train, 1.0, balanced=False).predict_proba(x)[:, 1],
        "logreg, domain": lambda: fit_logreg(tx, train, defaults.logreg_c, balanced=True).predict_proba(x)[:, 1],
        "hgb, domain defaults": lambda: fit_hgb(
            tx, train, seed, max_iter=defaults.hgb_max_iter, learning_rate=defaults.hgb_learning_rate
        ).predict_proba(x)[:, 1],
        "hgb, tuned": lambda: fit_hgb(tx, train, seed, **hgb_best).predict_proba(x)[:, 1],
        "mlp, defaults": lambda: mlp_scores(fit_mlp(tx, TRAIN_START, defaults, seed, workdir)[0], x),
        "mlp, tuned": lambda: mlp_scores(fit_mlp(tx, TRAIN_START, FraudTrainParams(**mlp_best), seed, workdir)[0], x),
    }
    scores = {}
    for name, fit in fits.items():
        with clock(f"test {name}"):
            scores[name] = fit()
    scores["hgb + mlp, mean rank"] = mean_rank(scores["hgb, tuned"], scores["mlp, tuned"])
    ours = {name: handbook_scores(tx, test, s) for name, s in scores.items()}
    return {
        "data": data,
        "protocol": {
            "train_start": TRAIN_START,
            "validation_train_start": VALID_START,
            "week_days": WEEK,
            "delay_days": DELAY,
            "top_k": TOP_K,
            "selection": "average precision on the validation week",
            "mlp_early_stopping": "last day of the training week held out",
            "threads": THREADS,
        },
        "handbook": HANDBOOK,
        "ours": ours,
        "comparison": compare(ours),
        "selected": {"hgb": hgb_best, "mlp": mlp_best},
        "validation_ap": validation_ap,
        "mlp_defaults": defaults.model_dump(),
        "grids": {"hgb": hgb_grid, "mlp": mlp_grid},
        "seconds": clock.laps,
    }


def print_handbook(result: dict[str, Any]) -> None:
    ours, test = result["ours"], result["data"]["test"]
    rows: list[list[Any]] = [
        [f"handbook: {n}", f.get("auroc"), f.get("average_precision"), f.get("card_precision"), None]
        for n, f in HANDBOOK.items()
    ]
    rows += [
        [n, f["auroc"], f["average_precision"], f["card_precision"], f["recall_at_1pct_fpr"]] for n, f in ours.items()
    ]
    print_table(
        f"test week 2018-08-08..14: {test['rows']} transactions, {test['frauds']} frauds",
        ["model", "AUC ROC", "AP", "CP@100", "recall@1%FPR"],
        rows,
    )
    refs = [(r, m) for r, f in HANDBOOK.items() for m in f]
    short = {
        "auroc": "AUC",
        "average_precision": "AP",
        "card_precision": "CP",
        "logistic regression": "LR",
        "random forest": "RF",
        "XGBoost": "XGB",
        "XGBoost tuned": "XGB tuned",
    }
    mark = {"beats": "+", "ties": "=", "below": "-"}
    print_table(
        "vs the handbook's figures (+ beats, = ties, - below, at 3 decimals)",
        ["model", *(f"{short[r]} {short[m]}" for r, m in refs)],
        [[n, *(mark[result["comparison"][n][f"{r} {m}"]] for r, m in refs)] for n in ours],
    )
    selected = result["selected"]
    print(
        f"\nselected on validation (train {VALID_START}..+6 days, validate 2018-07-25..31, by AP):\n"
        f"  hgb {selected['hgb']}\n  mlp {selected['mlp']} (best epoch {result['grids']['mlp'][0]['best_epochs'][0]})\n"
        "  validation AP: " + ", ".join(f"{k} {v:.3f}" for k, v in result["validation_ap"].items())
    )
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in result["seconds"].items()))


# --- weeks: the handbook's model-selection protocol, four prequential test weeks ------------------

# Chapter 5.3 of the handbook (its model_selection_wrapper: n_folds 4, start_date_training 2018-07-25,
# train, delay and assessment periods all 7 days). Its prequentialSplit shifts a fold's training week
# back by one week per fold, from start - (delay + validation) = 2018-07-11 for validation and from
# start + 3 weeks = 2018-08-15 for test. Each fold is the handbook's get_train_test_set (handbook_split
# here): a training week, a 7-day delay, an assessment week without the cards already known compromised.
WEEKS_VALID_STARTS = ("2018-06-20", "2018-06-27", "2018-07-04", "2018-07-11")  # validate 07-04 .. 07-31
WEEKS_TEST_STARTS = ("2018-07-25", "2018-08-01", "2018-08-08", "2018-08-15")  # test 08-08 .. 09-04
# Test AP of the handbook on this protocol, mean of the four test weeks (chapter 5.3 for logistic
# regression, random forest and XGBoost after model selection; balanced bagging and the neural network
# from its later chapters on the same folds), as issue 19 quotes them.
HANDBOOK_WEEKS_AP = {
    "XGBoost": 0.687,
    "balanced bagging": 0.680,
    "random forest": 0.678,
    "neural network": 0.675,
    "logistic regression": 0.623,
}
WEEKS_GOAL_AP = 0.70
# Smaller grids than `handbook`'s: every point is fitted on four validation folds, not one, and the
# benchmark has to fit in about 10 minutes on 2 shared cores. HGB's sizes are staged (HGB_ITERS).
WEEKS_HGB_GRID = {
    "learning_rate": (0.05, 0.1),
    "max_leaf_nodes": (7, 15),
    "min_samples_leaf": (50, 200),
    "l2_regularization": (10.0,),
}
WEEKS_MLP_GRID = {"hidden": ([64, 32], [128, 64]), "lr": (1e-3, 3e-3), "dropout": (0.1,), "batch_size": (512,)}
WEEKS_METRICS = {"average_precision": "AP", "auroc": "AUC ROC", "card_precision": "CP@100"}


def week_label(start: str) -> str:
    """The assessment week of the fold whose training week starts on `start`, e.g. 08-08..14."""
    first = np.datetime64(start, "D") + WEEK + DELAY
    return f"{str(first)[5:]}..{str(first + WEEK - 1)[5:]}"


def mean_sd(values: list[float]) -> dict[str, float]:
    # Population sd (ddof 0), as the handbook's figures (GridSearchCV's std_test_score) are.
    return {"mean": float(np.mean(values)), "sd": float(np.std(values))}


def bench_weeks() -> dict[str, Any] | None:
    """The handbook's model-selection protocol: four prequential test weeks, mean and sd, vs its figures.

    Dates (2018), from the handbook's chapter 5.3 (WEEKS_VALID_STARTS, WEEKS_TEST_STARTS above):
    test folds train on 07-25..31, 08-01..07, 08-08..14 and 08-15..21, each followed by a 7-day delay,
    and are tested on 08-08..14, 08-15..21, 08-22..28 and 08-29..09-04; the first is the `handbook`
    benchmark's week. Hyperparameters (HGB and MLP grids) and the model named as ours are chosen by mean
    AP over the four validation folds, trained on 06-20, 06-27, 07-04 and 07-11 (a week each) and
    validated on 07-04..10, 07-11..17, 07-18..24 and 07-25..31: never on a test week. Every model is
    refitted on each test fold's training week, the MLP's last day held out for early stopping.
    """
    if not HANDBOOK_DATA.is_file():
        print(f"skipped: dataset not found at {HANDBOOK_DATA}")
        return None
    from threadpoolctl import threadpool_limits

    with threadpool_limits(THREADS), tempfile.TemporaryDirectory(prefix="aiflow-bench-mlp-") as tmp:
        result = run_weeks(Path(tmp))
    print_weeks(result)
    return result


def run_weeks(workdir: Path) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score

    from domains.fraud.params import FraudTrainParams

    params, defaults, clock = fraud_params(), FraudTrainParams(num_threads=THREADS), Clock()
    seed = params.seed
    tx, data = load_handbook(params, clock)
    folds = {start: handbook_split(tx, start) for start in WEEKS_TEST_STARTS}
    data["weeks"] = {
        week_label(start): {
            "train_start": start,
            "train_rows": int(train.sum()),
            "train_frauds": int(tx.y[train].sum()),
            "test_rows": int(test.sum()),
            "test_frauds": int(tx.y[test].sum()),
        }
        for start, (train, test) in folds.items()
    }
    print(f"gate {data['verdict']} ({data['rows_quarantined']} quarantined); weeks {data['weeks']}", flush=True)

    # Model selection on the four validation folds, by mean AP, as the handbook's grid search does.
    with clock("select hgb"):
        hgb_grid, hgb_valid = search_hgb(tx, seed, WEEKS_VALID_STARTS, WEEKS_HGB_GRID)
    print(f"  hgb: best of {len(hgb_grid)} on validation: {hgb_grid[0]}", flush=True)
    with clock("select mlp"):
        mlp_grid, mlp_valid = search_mlp(tx, seed, workdir, WEEKS_VALID_STARTS, WEEKS_MLP_GRID)
    hgb_best = {k: hgb_grid[0][k] for k in [*WEEKS_HGB_GRID, "max_iter"]}
    mlp_best = FraudTrainParams(**MLP_FIXED, **{k: mlp_grid[0][k] for k in WEEKS_MLP_GRID})
    # The logistic regression on the validation folds too (seconds), so that the ensembles and the
    # model to name as ours are chosen on validation, not on the test weeks.
    with clock("validate logreg"):
        valid_folds = [handbook_split(tx, start) for start in WEEKS_VALID_STARTS]
        logreg_valid = [fit_logreg(tx, tr, 1.0, balanced=False).predict_proba(tx.x[va])[:, 1] for tr, va in valid_folds]
    candidates = {
        "logreg, handbook recipe": logreg_valid,
        "hgb, tuned": hgb_valid,
        "mlp, tuned": mlp_valid,
        "hgb + mlp, mean rank": [mean_rank(h, m) for h, m in zip(hgb_valid, mlp_valid)],
        "logreg + hgb + mlp, mean rank": [mean_rank(*s) for s in zip(logreg_valid, hgb_valid, mlp_valid)],
    }
    validation = {
        name: [float(average_precision_score(tx.y[va], s)) for (_, va), s in zip(valid_folds, scores)]
        for name, scores in candidates.items()
    }
    chosen = max(validation, key=lambda name: np.mean(validation[name]))

    weeks: dict[str, dict[str, dict[str, float]]] = {}
    for start, (train, test) in folds.items():
        label = week_label(start)
        scores = week_scores(tx, start, train, test, seed, defaults, hgb_best, mlp_best, workdir, clock)
        weeks[label] = {name: handbook_scores(tx, test, s) for name, s in scores.items()}
        print(f"  {label}: " + ", ".join(f"{n} AP {m['average_precision']:.3f}" for n, m in weeks[label].items()))

    models = list(next(iter(weeks.values())))
    summary = {
        name: {
            metric: mean_sd([weeks[w][name][metric] for w in weeks])
            for metric in [*WEEKS_METRICS, "recall_at_1pct_fpr"]
        }
        for name in models
    }
    best_on_test = max(models, key=lambda name: summary[name]["average_precision"]["mean"])
    return {
        "data": data,
        "protocol": {
            "source": "Le Borgne et al., handbook chapter 5.3 (model_selection_wrapper, prequentialSplit)",
            "validation_train_starts": list(WEEKS_VALID_STARTS),
            "test_train_starts": list(WEEKS_TEST_STARTS),
            "test_weeks": [week_label(s) for s in WEEKS_TEST_STARTS],
            "week_days": WEEK,
            "delay_days": DELAY,
            "top_k": TOP_K,
            "selection": "mean average precision over the four validation folds",
            "sd": "population (ddof 0), as the handbook's",
            "mlp_early_stopping": "last day of each training week held out",
            "threads": THREADS,
        },
        "handbook_ap": HANDBOOK_WEEKS_AP,
        "goal_ap": WEEKS_GOAL_AP,
        "weeks": weeks,
        "summary": summary,
        "validation_ap": {name: {**mean_sd(aps), "folds": aps} for name, aps in validation.items()},
        "chosen_on_validation": chosen,
        "chosen_test_ap": summary[chosen]["average_precision"],
        "best_on_test": best_on_test,
        "goal_met": bool(summary[chosen]["average_precision"]["mean"] >= WEEKS_GOAL_AP),
        "goal_met_by_any": bool(summary[best_on_test]["average_precision"]["mean"] >= WEEKS_GOAL_AP),
        "selected": {"hgb": hgb_best, "mlp": mlp_best.model_dump()},
        "grids": {"hgb": hgb_grid, "mlp": mlp_grid},
        "seconds": clock.laps,
    }


def week_scores(
    tx: Transactions,
    start: str,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
    defaults: FraudTrainParams,
    hgb_best: dict[str, Any],
    mlp_best: FraudTrainParams,
    workdir: Path,
    clock: Clock,
) -> dict[str, np.ndarray]:
    """Every model trained on the week from `start`, scored on its test week; the ensembles."""
    x, label = tx.x[test], week_label(start)
    fits: dict[str, Callable[[], np.ndarray]] = {
        "logreg, handbook recipe": lambda: fit_logreg(tx, train, 1.0, balanced=False).predict_proba(x)[:, 1],
        "hgb, domain defaults": lambda: fit_hgb(
            tx, train, seed, max_iter=defaults.hgb_max_iter, learning_rate=defaults.hgb_learning_rate
        ).predict_proba(x)[:, 1],
        "hgb, tuned": lambda: fit_hgb(tx, train, seed, **hgb_best).predict_proba(x)[:, 1],
        "mlp, tuned": lambda: mlp_scores(fit_mlp(tx, start, mlp_best, seed, workdir)[0], x),
    }
    scores = {}
    for name, fit in fits.items():
        with clock(f"{label} {name}"):
            scores[name] = fit()
    scores["hgb + mlp, mean rank"] = mean_rank(scores["hgb, tuned"], scores["mlp, tuned"])
    scores["logreg + hgb + mlp, mean rank"] = mean_rank(
        scores["logreg, handbook recipe"], scores["hgb, tuned"], scores["mlp, tuned"]
    )
    return scores


def print_weeks(result: dict[str, Any]) -> None:
    weeks, summary = result["weeks"], result["summary"]
    for metric, short in WEEKS_METRICS.items():
        rows: list[list[Any]] = []
        if metric == "average_precision":
            rows += [[f"handbook: {n}", *[None] * len(weeks), f"{ap:.3f}"] for n, ap in HANDBOOK_WEEKS_AP.items()]
        for name, figures in summary.items():
            m = figures[metric]
            rows.append([name, *(weeks[w][name][metric] for w in weeks), f"{m['mean']:.3f} ± {m['sd']:.3f}"])
        print_table(f"{short} per test week (2018)", ["model", *weeks, "mean ± sd"], rows)
    chosen, ap = result["chosen_on_validation"], result["chosen_test_ap"]
    goal = result["goal_ap"]
    print(
        f"\nchosen on validation (mean AP over the 4 validation folds): {chosen}, test AP {ap['mean']:.3f} ± "
        f"{ap['sd']:.3f}: goal AP >= {goal}: {'met' if result['goal_met'] else 'MISSED'}; best on test: "
        f"{result['best_on_test']} ({summary[result['best_on_test']]['average_precision']['mean']:.3f})"
    )
    print("validation AP: " + ", ".join(f"{n} {v['mean']:.3f}" for n, v in result["validation_ap"].items()))
    mlp = {k: result["selected"]["mlp"][k] for k in WEEKS_MLP_GRID}
    print(f"selected: hgb {result['selected']['hgb']}; mlp {mlp}")
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in result["seconds"].items()))


# --- gpu: MLP epochs on CPU and CUDA --------------------------------------------------------------


def bench_gpu(epochs: int = 4) -> dict[str, Any] | None:
    """Seconds per MLP epoch on the pipeline's own training split, CPU vs CUDA, two batch sizes."""
    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return None
    from domains.common.contract import TrainEnv
    from domains.fraud.pipeline import acquire, prepare
    from domains.fraud.train import load_split, train_mlp

    params = fraud_params()
    with tempfile.TemporaryDirectory(prefix="aiflow-bench-gpu-") as tmp:
        work = Path(tmp)
        prepare(params, acquire(params, work), work, work)
        frame, names = load_split(work)
        train, val = frame[frame["split"] == "train"], frame[frame["split"] == "val"]
        result: dict[str, Any] = {
            "train_rows": len(train),
            "device_name": torch.cuda.get_device_name(0),
            "epochs": epochs,
            "cpu_threads": params.train.num_threads,
        }
        rows = []
        for batch_size in (params.train.batch_size, 8192):
            for device in ("cpu", "cuda"):
                t = params.train.model_copy(
                    update={"device": device, "epochs": epochs, "patience": epochs, "batch_size": batch_size}
                )
                with contextlib.redirect_stderr(io.StringIO()):
                    _, history = train_mlp(
                        t,
                        params.seed,
                        train[names].to_numpy("float32"),
                        train["label"].to_numpy(),
                        val[names].to_numpy("float32"),
                        val["label"].to_numpy(),
                        TrainEnv(work, fingerprint=f"{device}-{batch_size}"),
                    )
                per_epoch = statistics.median(e["seconds"] for e in history.epochs[1:])  # epoch 1 warms up
                result[f"{device}_batch{batch_size}_epoch_s"] = round(per_epoch, 3)
                rows.append([f"{device}, batch {batch_size}", per_epoch])
    print_table(
        f"MLP seconds per epoch ({result['train_rows']} rows, median of epochs 2..{epochs}; {result['device_name']})",
        ["", "seconds"],
        rows,
    )
    return result


# --- command line ---------------------------------------------------------------------------------

BENCHMARKS: dict[str, Callable[[], dict[str, Any] | None]] = {
    "repro": bench_repro_fraud,
    "gate": bench_gate,
    "handbook": bench_handbook,
    "weeks": bench_weeks,
    "gpu": bench_gpu,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fraud", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="name", required=True, metavar="BENCHMARK")
    for name, fn in BENCHMARKS.items():
        sub.add_parser(name, help=(fn.__doc__ or "").splitlines()[0])
    sub.add_parser("all", help="every benchmark above, one after the other")
    worker = sub.add_parser("gate-worker")  # internal: `gate` runs it in a fresh interpreter
    worker.add_argument("table", type=Path)
    worker.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    if args.name == "gate-worker":
        print(json.dumps(gate_worker(args.table, args.repeats)))
        return 0
    run_benchmarks("fraud", BENCHMARKS, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
