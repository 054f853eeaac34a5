"""Recommender benchmarks: rating prediction (torch MF against Surprise) and top-10 ranking.

1. Synthetic data (the domain's generator, so the noise floor is known): torch MF vs Surprise SVD
   on the same folds, fit-time ratio and RMSE ratio, at the pipeline's default size and at the
   size of MovieLens 100K.
2. MovieLens 100K from ../shared/datasets (skipped, with a message, when absent): Surprise's own
   protocol (5-fold cross-validation over all ratings, default parameters) for BaselineOnly, SVD,
   SVD++, KNNBaseline and the torch MF, next to the figures published in Surprise's README.

3. Top-10 on MovieLens 100K with Microsoft recommenders' protocol, next to their published table:
   a seeded per-user stratified random 75/25 split, every model ranks the items a user has not
   rated in training, every test rating is relevant. Ranking models choose their hyperparameters on
   a validation slice cut from the training part the same way (never the test part).

The torch models use the `recsys.train` section of params.yaml. Times are wall-clock seconds on this
machine, one thread for torch; Surprise's published times come from another machine.

    python benchmarks/recsys.py                   # both parts (MovieLens 100K: a few minutes, SVD++ dominates)
    python benchmarks/recsys.py --synthetic-only
    python benchmarks/recsys.py --skip svdpp      # leave out the slow SVD++
    python benchmarks/recsys.py --select          # how recsys.train's lr and batch_size were chosen
    python benchmarks/recsys.py --topk-only       # only part 3 (about a minute)

--select trains the MF for each (lr, batch_size) of a small grid on MovieLens 100K, on 90 % of the
training ratings of the first fold, and scores it on the other 10 %: the test folds are never seen.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domains.common.registry import load_params  # noqa: E402
from domains.common.trainer import seed_everything  # noqa: E402
from domains.recsys.baselines import make_surprise, popularity, predict_surprise, to_trainset  # noqa: E402
from domains.recsys.loaders import read_movielens  # noqa: E402
from domains.recsys.metrics import K, mae, novelty, ranking_metrics, rmse  # noqa: E402
from domains.recsys.mf import fit_mf, predict_mf, save_mf  # noqa: E402
from domains.recsys.params import RecsysParams  # noqa: E402
from domains.recsys.ranking import fit_ranking  # noqa: E402
from domains.recsys.recommend import recommend  # noqa: E402
from domains.recsys.split import assign_folds, per_user_random_split  # noqa: E402
from domains.recsys.synthetic import generate_ratings  # noqa: E402
from domains.recsys.train import MF, POPULARITY, model_file  # noqa: E402

ML_100K = ROOT.parent / "shared" / "datasets" / "recommender" / "ml-100k"
SURPRISE = ("baseline_only", "svd", "svdpp", "knn_baseline")
# Surprise README (NicolasHug/Surprise@2381fb1), MovieLens 100K, 5-fold CV, default parameters.
PUBLISHED = {
    "baseline_only": (0.944, 0.748),
    "svd": (0.934, 0.737),
    "svdpp": (0.919, 0.721),
    "knn_baseline": (0.931, 0.733),
}
PUBLISHED_SVD_SECONDS = 6.0  # "SVD ... 0:00:06" for the 5 folds
SCALE = (1.0, 5.0)
# Microsoft recommenders' benchmark (examples/06_benchmarks, MovieLens 100K, top-10): NDCG@10, precision@10.
PUBLISHED_TOPK = {
    "BiVAE": (0.475, 0.412),
    "BPR (Cornac)": (0.442, 0.388),
    "LightGCN": (0.418, 0.366),
    "NCF": (0.399, 0.349),
    "SAR": (0.388, 0.333),
    "SVD (Surprise)": (0.096, 0.091),
}
TOPK_MODELS = ("popularity", "item_knn", "ease", "bpr", "vae", "mf", "svd")


def cross_validate(
    ratings: pd.DataFrame, models: list[str], p: RecsysParams, folds: int, seed: int, work: Path
) -> pd.DataFrame:
    """Every model on the same folds: mean RMSE/MAE over folds, fit and predict seconds per fold."""
    fold = assign_folds(len(ratings), folds, seed)
    user_ids, item_ids = np.unique(ratings["user_id"]), np.unique(ratings["item_id"])
    users = np.searchsorted(user_ids, ratings["user_id"].to_numpy())
    items = np.searchsorted(item_ids, ratings["item_id"].to_numpy())
    y = ratings["rating"].to_numpy(float)
    seed_everything(seed, p.train.deterministic, p.train.num_threads)  # one-time torch import cost, not timed
    rows = []
    for k in range(folds):
        test = fold == k
        trainset = to_trainset(ratings[~test], SCALE)
        for name in models:
            began = time.perf_counter()
            if name == "mf":
                model, passes = fit_mf(
                    users[~test],
                    items[~test],
                    y[~test],
                    len(user_ids),
                    len(item_ids),
                    p.train,
                    SCALE,
                    seed,
                    work / f"mf{k}.ckpt",
                    f"bench{k}",
                    f"mf fold {k + 1}",
                )
                fitted = time.perf_counter()
                pred = predict_mf(model, users[test], items[test], SCALE)
                epochs = sum(len(h.epochs) for h in passes)
            else:
                algo = make_surprise(name, seed).fit(trainset)
                fitted = time.perf_counter()
                pred = predict_surprise(algo, ratings[test])
                epochs = None
            done = time.perf_counter()
            rows.append(
                {
                    "model": name,
                    "fold": k,
                    "rmse": rmse(y[test], pred),
                    "mae": mae(y[test], pred),
                    "fit_seconds": fitted - began,
                    "predict_seconds": done - fitted,
                    "epochs": epochs,
                }
            )
            print(
                f"  fold {k + 1}/{folds} {name:13s} rmse {rows[-1]['rmse']:.4f}  fit {fitted - began:6.2f} s  "
                f"predict {done - fitted:5.2f} s",
                file=sys.stderr,
                flush=True,
            )
    frame = pd.DataFrame(rows)
    summary = frame.groupby("model", sort=False).agg(
        rmse=("rmse", "mean"),
        mae=("mae", "mean"),
        fit_s_per_fold=("fit_seconds", "mean"),
        fit_s_median=("fit_seconds", "median"),
        predict_s_per_fold=("predict_seconds", "mean"),
        total_s=("fit_seconds", "sum"),
    )
    summary["total_s"] += frame.groupby("model", sort=False)["predict_seconds"].sum()
    return summary


SELECTION_GRID = {"lr": [0.03, 0.02, 0.01, 0.005], "batch_size": [1024, 2048, 4096]}


def select_part(p: RecsysParams, folds: int, work: Path) -> list[dict]:
    """Validation RMSE of the MF per (lr, batch_size), from fold 1's training ratings only."""
    ratings, _ = read_movielens("ml-100k", ML_100K)
    train = ratings[assign_folds(len(ratings), folds, p.seed) != 0]
    user_ids, item_ids = np.unique(ratings["user_id"]), np.unique(ratings["item_id"])
    users = np.searchsorted(user_ids, train["user_id"].to_numpy())
    items = np.searchsorted(item_ids, train["item_id"].to_numpy())
    y = train["rating"].to_numpy(float)
    val = np.random.default_rng(p.seed + 1).random(len(y)) < 0.1
    seed_everything(p.seed, p.train.deterministic, p.train.num_threads)
    rows = []
    for lr in SELECTION_GRID["lr"]:
        for batch_size in SELECTION_GRID["batch_size"]:
            t = p.train.model_copy(update={"lr": lr, "batch_size": batch_size})
            began = time.perf_counter()
            model, _ = fit_mf(
                users[~val],
                items[~val],
                y[~val],
                len(user_ids),
                len(item_ids),
                t,
                SCALE,
                p.seed,
                work / "select.ckpt",
                f"select{lr}-{batch_size}",
                "mf select",
            )
            rows.append(
                {
                    "lr": lr,
                    "batch_size": batch_size,
                    "fit_seconds": round(time.perf_counter() - began, 3),
                    "val_rmse": rmse(y[val], predict_mf(model, users[val], items[val], SCALE)),
                }
            )
            print(
                f"  lr {lr:<6} batch {batch_size:<5} validation RMSE {rows[-1]['val_rmse']:.4f}  "
                f"fit {rows[-1]['fit_seconds']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    return sorted(rows, key=lambda r: r["val_rmse"])


def synthetic_part(p: RecsysParams, sizes: dict[str, dict], folds: int, work: Path) -> dict:
    out = {}
    for label, size in sizes.items():
        synth = p.synthetic.model_copy(update=size)
        data = generate_ratings(synth, p.seed)
        floor = float(np.sqrt(data.truth["rating_variance"].mean()))
        print(
            f"\nSynthetic {label}: {len(data.ratings)} ratings, {synth.n_users} users, {synth.n_items} items; "
            f"noise floor RMSE {floor:.4f}",
            file=sys.stderr,
        )
        summary = cross_validate(data.ratings, ["svd", "mf"], p, folds, p.seed, work)
        out[label] = {
            "ratings": len(data.ratings),
            "noise_floor_rmse": floor,
            **_ratios(summary),
            "models": summary.round(4).to_dict("index"),
        }
    return out


def movielens_part(p: RecsysParams, models: list[str], folds: int, work: Path) -> dict | None:
    if not (ML_100K / "u.data").is_file():
        print(
            f"\nMovieLens 100K: skipped, {ML_100K / 'u.data'} not found (see ../shared/datasets/README.md)",
            file=sys.stderr,
        )
        return None
    ratings, _ = read_movielens("ml-100k", ML_100K)
    print(f"\nMovieLens 100K: {len(ratings)} ratings, Surprise's protocol ({folds}-fold CV)", file=sys.stderr)
    summary = cross_validate(ratings, models, p, folds, p.seed, work)
    for name, (published_rmse, published_mae) in PUBLISHED.items():
        if name in summary.index:
            summary.loc[name, "published_rmse"] = published_rmse
            summary.loc[name, "published_mae"] = published_mae
    return {
        **_ratios(summary),
        "best_model": str(summary["rmse"].idxmin()),
        "best_rmse": float(summary["rmse"].min()),
        "published_svd_seconds_5_folds": PUBLISHED_SVD_SECONDS,
        "models": summary.round(4).to_dict("index"),
    }


def topk_part(p: RecsysParams, models: list[str], work: Path) -> dict | None:
    """Every model's top-10 on Microsoft recommenders' protocol (see the module docstring)."""
    if not (ML_100K / "u.data").is_file():
        print(f"\nTop-10: skipped, {ML_100K / 'u.data'} not found (see ../shared/datasets/README.md)", file=sys.stderr)
        return None
    ratings, _ = read_movielens("ml-100k", ML_100K)
    ratings = ratings.astype({"user_id": "int64", "item_id": "int64", "rating": "float64", "timestamp": "int64"})
    test = per_user_random_split(ratings, 0.25, p.seed)
    train, held = ratings[~test].reset_index(drop=True), ratings[test]
    val = per_user_random_split(train, 0.25, p.seed + 1)  # hyperparameters: a slice of the training part
    users = np.unique(held["user_id"])
    by_user = held.groupby("user_id")["item_id"].apply(set)
    relevant = [by_user.get(u, set()) for u in users]
    catalogue = train["item_id"].nunique()
    counts = train["item_id"].value_counts().to_dict()
    n_users = train["user_id"].nunique()
    print(
        f"\nTop-{K}, MovieLens 100K, Microsoft recommenders' protocol: {len(train)} training, {len(held)} test "
        f"ratings, {len(users)} users, {catalogue} items",
        file=sys.stderr,
    )
    train_dir = work / "topk"
    train_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(p.seed, p.train.deterministic, p.train.num_threads)
    user_ids, item_ids = np.unique(train["user_id"]), np.unique(train["item_id"])
    rows = {}
    for name in models:
        began = time.perf_counter()
        chosen = {}
        if name == POPULARITY:
            popularity(train).to_parquet(model_file(train_dir, POPULARITY))
        elif name == MF:
            model, _ = fit_mf(
                np.searchsorted(user_ids, train["user_id"]),
                np.searchsorted(item_ids, train["item_id"]),
                train["rating"].to_numpy(float),
                len(user_ids),
                len(item_ids),
                p.train,
                SCALE,
                p.seed,
                work / "mf_topk.ckpt",
                "bench-topk",
                "mf",
            )
            save_mf(model, user_ids, item_ids, model_file(train_dir, MF))
        elif name in SURPRISE:
            import joblib

            joblib.dump(make_surprise(name, p.seed).fit(to_trainset(train, SCALE)), model_file(train_dir, name))
        else:
            fitted = fit_ranking(name, train, val, float("-inf"), p.train, p.seed, work, f"bench-topk-{name}")
            fitted.model.save(model_file(train_dir, name))
            chosen = fitted.chosen
        fit_s = time.perf_counter() - began
        if POPULARITY not in rows and name != POPULARITY:  # unknown users fall back on it
            popularity(train).to_parquet(model_file(train_dir, POPULARITY))
        began = time.perf_counter()
        recs, _ = recommend(train_dir, name, train, users, "cpu")
        rows[name] = {
            **ranking_metrics(recs, relevant, catalogue),
            "map": _map_all_relevant(recs, relevant),
            "novelty": novelty(recs, counts, n_users),
            "fit_seconds": fit_s,
            "recommend_seconds": time.perf_counter() - began,
            "chosen": json.dumps(chosen),
        }
        print(
            f"  {name:12s} NDCG@{K} {rows[name][f'ndcg_at_{K}']:.4f}  P@{K} {rows[name][f'precision_at_{K}']:.4f}  "
            f"fit {fit_s:6.2f} s  {chosen}",
            file=sys.stderr,
            flush=True,
        )
    best = max(rows, key=lambda m: rows[m][f"ndcg_at_{K}"])
    return {
        "protocol": "per-user stratified random 75/25 split (seed recsys.seed), top-10 over items unrated in "
        "training, every test rating relevant",
        "train_ratings": len(train),
        "test_ratings": len(held),
        "users": len(users),
        "best_model": best,
        "best_ndcg_at_10": rows[best][f"ndcg_at_{K}"],
        "published": {k: {"ndcg_at_10": v[0], "precision_at_10": v[1]} for k, v in PUBLISHED_TOPK.items()},
        "models": rows,
    }


def _map_all_relevant(recommended: np.ndarray, relevant: list[set]) -> float:
    """MAP as Microsoft recommenders computes it: precision at each hit, summed, over all of the user's relevant items."""
    aps = []
    for row, rel in zip(recommended, relevant):
        if rel:
            hits = np.array([item in rel for item in row], dtype=float)
            aps.append(float((np.cumsum(hits) / np.arange(1, len(row) + 1) * hits).sum() / len(rel)))
    return float(np.mean(aps)) if aps else float("nan")


def _ratios(summary: pd.DataFrame) -> dict:
    if not {"svd", "mf"} <= set(summary.index):
        return {}
    return {
        "mf_over_svd_fit_time": float(summary.loc["mf", "fit_s_per_fold"] / summary.loc["svd", "fit_s_per_fold"]),
        "mf_over_svd_fit_time_median": float(summary.loc["mf", "fit_s_median"] / summary.loc["svd", "fit_s_median"]),
        "mf_over_svd_rmse": float(summary.loc["mf", "rmse"] / summary.loc["svd", "rmse"]),
    }


def _markdown(results: dict) -> str:
    lines = []
    for label, part in results.get("synthetic", {}).items():
        lines += [
            f"### Synthetic, {label} ({part['ratings']} ratings, noise floor RMSE {part['noise_floor_rmse']:.4f})",
            "",
            pd.DataFrame(part["models"]).T.to_markdown(floatfmt=".4f"),
            "",
            f"torch MF / Surprise SVD: fit time x{part['mf_over_svd_fit_time']:.2f} (median x"
            f"{part['mf_over_svd_fit_time_median']:.2f}), RMSE x{part['mf_over_svd_rmse']:.4f}",
            "",
        ]
    ml = results.get("movielens_100k")
    if ml:
        lines += [
            "### MovieLens 100K, 5-fold CV (Surprise's protocol)",
            "",
            pd.DataFrame(ml["models"]).T.to_markdown(floatfmt=".4f"),
            "",
            f"best: {ml['best_model']} RMSE {ml['best_rmse']:.4f}; torch MF / Surprise SVD: fit time "
            f"x{ml.get('mf_over_svd_fit_time', float('nan')):.2f}, RMSE x{ml.get('mf_over_svd_rmse', float('nan')):.4f}",
            "",
        ]
    topk = results.get("topk_movielens_100k")
    if topk:
        frame = pd.DataFrame(topk["models"]).T.drop(columns=["chosen"])
        lines += [
            f"### MovieLens 100K, top-{K} (Microsoft recommenders' protocol)",
            "",
            frame.astype(float).to_markdown(floatfmt=".4f"),
            "",
            f"best: {topk['best_model']} NDCG@{K} {topk['best_ndcg_at_10']:.4f}; published (NDCG@10, P@10): "
            + ", ".join(
                f"{k} {v['ndcg_at_10']:.3f} / {v['precision_at_10']:.3f}" for k, v in topk["published"].items()
            ),
            "",
        ]
    return "\n".join(lines)


def _machine() -> dict:
    """Where and when the figures were measured (fit times depend on it)."""
    import os
    import platform
    import subprocess
    from datetime import datetime

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic-only", action="store_true")
    parser.add_argument("--movielens-only", action="store_true")
    parser.add_argument("--topk-only", action="store_true", help="only the top-10 benchmark (part 3)")
    parser.add_argument("--skip", nargs="*", default=[], choices=SURPRISE, help="Surprise models to leave out")
    parser.add_argument("--select", action="store_true", help="only the MF's lr / batch_size selection (see above)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "recsys.json")
    args = parser.parse_args(argv)

    p = load_params(ROOT, "recsys")
    work = args.out.parent / "recsys-checkpoints"
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"params": p.train.model_dump(mode="json")}
    if args.select:
        if not (ML_100K / "u.data").is_file():
            print(f"selection skipped: {ML_100K / 'u.data'} not found", file=sys.stderr)
            return 0
        results["selection"] = select_part(p, args.folds, work)
        args.out.with_name("recsys_selection.json").write_text(json.dumps(results, indent=2))
        print(pd.DataFrame(results["selection"]).to_markdown(index=False, floatfmt=".4f"))
        return 0
    if args.topk_only:
        results["topk_movielens_100k"] = topk_part(p, list(TOPK_MODELS), work)
        results["machine"] = _machine()
        args.out.with_name("recsys_topk.json").write_text(json.dumps(results, indent=2))
        print(_markdown(results))
        print(f"\n(written to {args.out.with_name('recsys_topk.json')})")
        return 0
    if not args.movielens_only:
        sizes = {"pipeline default": {}, "MovieLens 100K size": {"n_users": 943, "n_items": 1682, "n_ratings": 100_000}}
        results["synthetic"] = synthetic_part(p, sizes, args.folds, work)
    if not args.synthetic_only:
        models = [m for m in SURPRISE if m not in args.skip] + ["mf"]
        results["movielens_100k"] = movielens_part(p, models, args.folds, work)
        results["topk_movielens_100k"] = topk_part(p, list(TOPK_MODELS), work)
    results["machine"] = _machine()
    args.out.write_text(json.dumps(results, indent=2))
    print(_markdown(results))
    print(f"\n(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
