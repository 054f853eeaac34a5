"""Score every model: rating errors on the folds, top-k on the hold-out; figures and tables for the report."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from domains.common.contract import Evaluation, Figure
from domains.recsys.metrics import K, mae, novelty, per_user_ranking, ranking_metrics, rmse
from domains.recsys.params import RecsysParams
from domains.recsys.pipeline import ITEMS, NOISE_FLOOR, PROFILE, RATINGS, USERS
from domains.recsys.recommend import recommend, sample_users
from domains.recsys.train import HISTORY, MF, POPULARITY, PREDICTIONS, RANKING, TIMES


def evaluate_models(p: RecsysParams, prepared_dir: Path, train_dir: Path, out_dir: Path) -> Evaluation:
    ratings = pd.read_parquet(prepared_dir / RATINGS)
    predictions = pd.read_parquet(train_dir / PREDICTIONS)
    times = json.loads((train_dir / TIMES).read_text())
    ranking = json.loads((train_dir / RANKING).read_text())
    floor = json.loads((prepared_dir / NOISE_FLOOR).read_text()) if (prepared_dir / NOISE_FLOOR).is_file() else None
    profile = json.loads((prepared_dir / PROFILE).read_text())
    models = list(times)  # the rating models trained, in training order
    rankers = [*ranking, POPULARITY]  # the implicit-feedback models, then the baseline

    metrics = {
        name: {
            **fold_errors(predictions, name),
            "fit_seconds": float(np.mean(times[name]["fit_seconds"])),
            "predict_seconds": float(np.mean(times[name]["predict_seconds"])),
        }
        for name in models
    }
    metrics.update({name: {"fit_seconds": float(ranking[name]["fit_seconds"])} for name in ranking})

    # Top-k: the final models rank every unseen item for the held-out users.
    train, holdout = ratings[~ratings["holdout"]], ratings[ratings["holdout"]]
    users = sample_users(holdout, p.evaluate.topk_max_users, p.seed)
    cold = ~np.isin(users, train["user_id"].unique())  # nothing to learn them from: left out of the ranking
    users = users[~cold]
    liked = holdout[holdout["rating"] >= p.evaluate.relevance_threshold]
    relevant = _sets_by_user(liked, users)
    catalogue = train["item_id"].nunique()
    counts = train["item_id"].value_counts().to_dict()
    n_train_users = train["user_id"].nunique()
    lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in [*models, *rankers]:
        lists[name] = recommend(train_dir, name, train, users, p.train.device)
        metrics.setdefault(name, {}).update(
            ranking_metrics(lists[name][0], relevant, catalogue), novelty=novelty(lists[name][0], counts, n_train_users)
        )
    ndcg = f"ndcg_at_{K}"
    for name in lists:
        base = metrics[POPULARITY][ndcg]
        metrics[name]["ndcg_over_popularity"] = metrics[name][ndcg] / base if base > 0 else float("nan")

    activity = error_by_activity(ratings, predictions, models, p.evaluate.activity_bins)
    titles = _titles(prepared_dir)
    history = json.loads((train_dir / HISTORY).read_text())
    candidate = p.evaluate.candidate
    figures = [
        _comparison_figure(metrics, models, floor),
        _ranking_figure(metrics, list(lists)),
        _long_tail_figure(train, lists),
        _activity_figure(activity, models),
        _distribution_figure(ratings, predictions, models, p.gate.rating_min, p.gate.rating_max),
        _training_figure(history),
    ]
    tables = {
        "top10_examples": top10_examples(
            candidate, lists, users, relevant, holdout, train, titles, p.evaluate.example_users, p.seed
        )
        if candidate in lists
        else pd.DataFrame(),
        "ranking_model_selection": selection_table(ranking),
        "error_by_user_activity": activity,
        "data_profile": _profile_table(profile),
    }
    if floor:
        tables["noise_floor"] = noise_floor_table(floor, metrics, models)
    plots = {
        "model_rmse": pd.DataFrame(
            {"model": models, "rmse": [metrics[m]["rmse"] for m in models], "mae": [metrics[m]["mae"] for m in models]}
        ),
        "topk_ndcg": pd.DataFrame({"model": list(lists), ndcg: [metrics[m][ndcg] for m in lists]}),
        "rmse_by_activity": activity,
    }
    notes = _notes(
        p, metrics, models, rankers, floor, profile, len(users), sum(1 for r in relevant if r), int(cold.sum())
    )
    return Evaluation(
        metrics=metrics,
        plots=plots,
        figures=figures,
        tables=tables,
        notes=notes,
        units=test_units(
            predictions.assign(user_id=ratings["user_id"].to_numpy()),
            models,
            lists,
            users,
            relevant,
            train,
            holdout,
            prepared_dir,
        ),
    )


def test_units(
    predictions: pd.DataFrame,
    models: list[str],
    lists: dict[str, tuple[np.ndarray, np.ndarray]],
    users: np.ndarray,
    relevant: list[set],
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    prepared_dir: Path,
) -> pd.DataFrame:
    """One row per user, the bootstrap unit: each rating model's squared errors over the user's fold predictions
    (`predictions`: one row per rating, with its user_id)
    (`weight`: how many), each model's top-k metrics (NaN: not ranked, or nothing relevant held out), and what
    slices cut on: the user's training ratings, the median training popularity of the user's held-out items and,
    where the release has them (MovieLens 100K's u.user, 1M's users.dat), age and gender."""
    everyone = np.union1d(predictions["user_id"].unique(), users)
    frame = pd.DataFrame({"row": everyone, "unit": everyone})
    by_user = predictions.groupby("user_id")
    frame["weight"] = frame["row"].map(by_user.size()).fillna(0).to_numpy(np.float64)
    for m in models:
        sse = ((predictions[m] - predictions["rating"]) ** 2).groupby(predictions["user_id"]).sum()
        frame[f"{m}:sse"] = frame["row"].map(sse).to_numpy(np.float64)
    ranked = pd.Index(users)
    position = ranked.get_indexer(frame["row"])
    for name, (items, _) in lists.items():
        for metric, values in per_user_ranking(items, relevant).items():
            frame[f"{name}:{metric}"] = np.where(position >= 0, values[position], np.nan)
    frame["slice:activity"] = frame["row"].map(train["user_id"].value_counts()).fillna(0).to_numpy(np.float64)
    held_popularity = (
        holdout["item_id"].map(train["item_id"].value_counts()).fillna(0).groupby(holdout["user_id"]).median()
    )
    frame["slice:popularity"] = frame["row"].map(held_popularity).to_numpy(np.float64)
    if (prepared_dir / USERS).is_file():
        people = pd.read_parquet(prepared_dir / USERS).drop_duplicates("user_id").set_index("user_id")
        frame["slice:age"] = frame["row"].map(people["age"]).to_numpy(np.float64)
        frame["slice:gender"] = frame["row"].map(people["gender"]).to_numpy(object)
    return frame


def selection_table(ranking: dict) -> pd.DataFrame:
    """The settings tried per ranking model (of an early-stopping curve: the kept epoch and the last), their
    validation NDCG@10, and which was kept."""
    rows = []
    for name, info in ranking.items():
        tried_all = info["selection"]
        if tried_all and "epochs" in tried_all[0]:  # an early-stopping curve: the kept epoch and the last one
            tried_all = [t for t in tried_all if t["epochs"] == info["chosen"]["epochs"]] + tried_all[-1:]
            tried_all = list({t["epochs"]: t for t in tried_all}.values())
        for tried in tried_all:
            setting = {k: v for k, v in tried.items() if k not in ("val_ndcg_at_10", "train_loss")}
            rows.append(
                {
                    "model": name,
                    "setting": ", ".join(f"{k}={v}" for k, v in setting.items()),
                    "val_ndcg_at_10": tried["val_ndcg_at_10"],
                    "chosen": setting.items() <= info["chosen"].items(),
                }
            )
    return pd.DataFrame(rows)


def fold_errors(predictions: pd.DataFrame, name: str) -> dict[str, float]:
    """RMSE and MAE of a model: the mean over folds of each fold's error (Surprise's cross_validate)."""
    per_fold = [(rmse(f["rating"], f[name]), mae(f["rating"], f[name])) for _, f in predictions.groupby("fold")]
    return {"rmse": float(np.mean([r for r, _ in per_fold])), "mae": float(np.mean([m for _, m in per_fold]))}


def error_by_activity(
    ratings: pd.DataFrame, predictions: pd.DataFrame, models: list[str], bins: list[int]
) -> pd.DataFrame:
    """RMSE per group of users by how many ratings they have: cold users are where models differ."""
    per_user = ratings["user_id"].map(ratings["user_id"].value_counts())
    edges = sorted(set(bins))
    group = np.searchsorted(edges, per_user.to_numpy(), side="right")
    labels = [f"<{edges[0]}", *(f"{a}-{b - 1}" for a, b in zip(edges, edges[1:])), f">={edges[-1]}"]
    lows = [0, *edges]
    rows = []
    for g in np.unique(group):
        mask = group == g
        rows.append(
            {
                "activity": labels[g],
                "min_ratings": lows[g],
                "users": int(ratings.loc[mask, "user_id"].nunique()),
                "ratings": int(mask.sum()),
                **{m: rmse(predictions.loc[mask, "rating"], predictions.loc[mask, m]) for m in models},
            }
        )
    return pd.DataFrame(rows)


def noise_floor_table(floor: dict, metrics: dict, models: list[str]) -> pd.DataFrame:
    rows = [
        {
            "predictor": "expected rating (best possible)",
            "rmse": floor["oracle_rmse"],
            "mae": floor["oracle_mae"],
            "rmse_over_floor": floor["oracle_rmse"] / floor["floor_rmse"],
        }
    ]
    rows += [
        {
            "predictor": m,
            "rmse": metrics[m]["rmse"],
            "mae": metrics[m]["mae"],
            "rmse_over_floor": metrics[m]["rmse"] / floor["floor_rmse"],
        }
        for m in models
    ]
    return pd.DataFrame(rows)


def top10_examples(
    model: str,
    lists: dict,
    users: np.ndarray,
    relevant: list[set],
    holdout: pd.DataFrame,
    train: pd.DataFrame,
    titles: pd.Series,
    n_users: int,
    seed: int,
) -> pd.DataFrame:
    """The candidate's top-10 for a few users who have relevant held-out items, with titles and hits."""
    with_hits = np.flatnonzero([bool(r) for r in relevant])
    if not len(with_hits) or n_users == 0:
        return pd.DataFrame()
    chosen = np.sort(np.random.default_rng(seed).choice(with_hits, min(n_users, len(with_hits)), replace=False))
    items, scores = lists[model]
    held = holdout.set_index(["user_id", "item_id"])["rating"]
    rows = []
    for row in chosen:
        user = users[row]
        liked = train[train["user_id"] == user].nlargest(3, ["rating", "timestamp"])["item_id"]
        for rank, (item, score) in enumerate(zip(items[row], scores[row]), start=1):
            rows.append(
                {
                    "user_id": int(user),
                    "rank": rank,
                    "item_id": int(item),
                    "title": titles.get(item, ""),
                    "score": float(score),
                    "held_out_rating": held.get((user, item), np.nan),
                    "user_liked_in_training": "; ".join(titles.get(i, str(i)) for i in liked) if rank == 1 else "",
                }
            )
    return pd.DataFrame(rows)


def _sets_by_user(liked: pd.DataFrame, users: np.ndarray) -> list[set]:
    groups = liked.groupby("user_id")["item_id"].apply(set)
    return [groups.get(u, set()) for u in users]


def _titles(prepared_dir: Path) -> pd.Series:
    file = prepared_dir / ITEMS
    return pd.read_parquet(file).set_index("item_id")["title"] if file.is_file() else pd.Series(dtype=str)


def _profile_table(profile: dict) -> pd.DataFrame:
    rows = []
    for key, value in profile.items():
        text = (
            ", ".join(f"{k}: {v}" for k, v in value.items())
            if isinstance(value, dict)
            else (
                ", ".join(map(str, value))
                if isinstance(value, list)
                else (f"{value:.4g}" if isinstance(value, float) else str(value))
            )
        )
        rows.append({"fact": key.replace("_", " "), "value": text})
    return pd.DataFrame(rows)


def _notes(
    p: RecsysParams,
    metrics: dict,
    models: list[str],
    rankers: list[str],
    floor: dict | None,
    profile: dict,
    n_users: int,
    n_with_relevant: int,
    n_cold: int,
) -> list[str]:
    best = min(models, key=lambda m: metrics[m]["rmse"]) if models else None
    ndcg = f"ndcg_at_{K}"
    best_ranker = max(rankers, key=lambda m: metrics[m][ndcg])
    notes = [
        f"Rating prediction: {p.prepare.n_folds}-fold cross-validation over all {profile['ratings']} ratings "
        f"({profile['users']} users, {profile['items']} items, sparsity {profile['sparsity']:.2%}); every model on the "
        "same folds; rmse and mae are means over folds, fit_seconds and predict_seconds means per fold.",
        f"Top-{K}: each user's last {p.prepare.holdout_per_user} ratings in time are held out; models fitted on the rest "
        f"rank every item the user has not rated. {n_users} users ranked, {n_with_relevant} with a held-out rating "
        f">= {p.evaluate.relevance_threshold} (the relevant items); coverage is the share of the {K}-item lists' "
        "distinct items in the catalogue.",
        f"Ranking models ({', '.join(rankers)}) learn from interactions (every training rating, its value ignored); "
        "their hyperparameters were chosen by NDCG@10 on a validation slice of the training ratings (each user's last "
        f"{p.prepare.holdout_per_user} in time, every one relevant), never on the hold-out; their fit_seconds are the final refit's (the selection "
        "comes before); novelty is the mean -log2(share of users who rated the item) of the recommended items.",
        f"Best ranking model: {best_ranker} (NDCG@{K} {metrics[best_ranker][ndcg]:.4f}, "
        f"x{metrics[best_ranker]['ndcg_over_popularity']:.2f} the popularity ranking's {metrics[POPULARITY][ndcg]:.4f}); "
        f"promotion metric: {p.evaluate.primary}, candidate {p.evaluate.candidate}.",
    ]
    if best:
        notes.append(f"Best RMSE: {best} ({metrics[best]['rmse']:.4f}).")
    if n_cold:
        notes.append(f"{n_cold} held-out user(s) have no training interaction: left out of the top-{K} ranking.")
    if "svd" in metrics and MF in metrics:
        notes.append(
            f"Torch MF vs Surprise SVD: fit time x{metrics[MF]['fit_seconds'] / metrics['svd']['fit_seconds']:.2f}, "
            f"RMSE x{metrics[MF]['rmse'] / metrics['svd']['rmse']:.4f}."
        )
    if floor:
        notes.append(
            f"Synthetic data: noise std {floor['noise_std']}; the best achievable RMSE (predicting each rating's "
            f"expected value) is {floor['floor_rmse']:.4f} (noise floor)."
        )
    return notes


# --- figures ---------------------------------------------------------------------------------


def _comparison_figure(metrics: dict, models: list[str], floor: dict | None) -> Figure:
    fig, (ax_rmse, ax_ndcg, ax_time) = plt.subplots(1, 3, figsize=(14, 4))
    ax_rmse.barh(models, [metrics[m]["rmse"] for m in models], color="C0")
    if floor:
        ax_rmse.axvline(floor["floor_rmse"], ls="--", color="grey", label="noise floor")
        ax_rmse.legend(loc="lower right")
    low = min(metrics[m]["rmse"] for m in models)
    ax_rmse.set(
        xlabel="RMSE (lower is better)",
        title="Rating prediction",
        xlim=(min(low, floor["floor_rmse"] if floor else low) * 0.95, max(metrics[m]["rmse"] for m in models) * 1.02),
    )
    ranked = [m for m in metrics if f"ndcg_at_{K}" in metrics[m]]
    ax_ndcg.barh(ranked, [metrics[m][f"ndcg_at_{K}"] for m in ranked], color="C1")
    ax_ndcg.set(xlabel=f"NDCG@{K} (higher is better)", title=f"Top-{K} on the time hold-out")
    timed = [m for m in metrics if "fit_seconds" in metrics[m]]
    ax_time.barh(timed, [max(metrics[m]["fit_seconds"], 1e-3) for m in timed], color="C2")
    ax_time.set(xlabel="fit seconds (log; rating models: per fold)", xscale="log", title="Fit time")
    for ax in (ax_ndcg, ax_time):
        ax.tick_params(labelleft=True)
    fig.tight_layout()
    return Figure("Model comparison", fig, "RMSE over the folds, NDCG@10 on the hold-out, fit time per fold.")


def _ranking_figure(metrics: dict, ranked: list[str]) -> Figure:
    order = sorted(ranked, key=lambda m: metrics[m][f"ndcg_at_{K}"])
    fig, axes = plt.subplots(1, 3, figsize=(14, max(3, 0.35 * len(order) + 1)), sharey=True)
    for ax, metric, colour in zip(axes, (f"ndcg_at_{K}", f"precision_at_{K}", f"recall_at_{K}"), ("C1", "C0", "C2")):
        ax.barh(
            order, [metrics[m][metric] for m in order], color=[("grey" if m == POPULARITY else colour) for m in order]
        )
        ax.axvline(metrics[POPULARITY][metric], ls="--", color="grey")
        ax.set(
            xlabel=metric.replace("_at_", "@"),
            title=metric.split("_at_")[0].upper() if metric.startswith("ndcg") else metric.split("_at_")[0],
        )
    fig.tight_layout()
    return Figure(
        f"NDCG@{K} per model",
        fig,
        f"Top-{K} quality of every model on the time hold-out; the dashed line "
        "is the popularity ranking (a bestseller list): a model left of it recommends worse than that.",
    )


def _long_tail_figure(train: pd.DataFrame, lists: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """Cumulative share of interactions (catalogue) and of each model's recommendations, items by popularity rank."""
    counts = train["item_id"].value_counts()  # most popular first
    rank = pd.Series(np.arange(1, len(counts) + 1), index=counts.index)
    x = np.arange(1, len(counts) + 1) / len(counts)
    fig, (ax_cum, ax_pop) = plt.subplots(1, 2, figsize=(13, 4.5))
    ax_cum.plot(x, np.cumsum(counts.to_numpy()) / counts.sum(), color="black", lw=2.5, label="training interactions")
    for name, (items, _) in lists.items():
        shown = np.bincount(rank.reindex(items.ravel()).fillna(len(counts)).to_numpy(int) - 1, minlength=len(counts))
        ax_cum.plot(x, np.cumsum(shown) / max(shown.sum(), 1), label=name, ls="--" if name == POPULARITY else "-")
    ax_cum.set(
        xlabel="items by popularity (share of the catalogue, most popular first)",
        ylabel="cumulative share",
        title="Long tail: where recommendations fall",
        xscale="log",
    )
    ax_cum.legend(fontsize=8)
    mean_pop = {name: float(counts.reindex(items.ravel()).fillna(0).mean()) for name, (items, _) in lists.items()}
    order = sorted(mean_pop, key=lambda m: mean_pop[m])
    ax_pop.barh(order, [mean_pop[m] for m in order], color="C4")
    ax_pop.axvline(float(counts.mean()), ls="--", color="black", label="catalogue mean")
    ax_pop.set(xlabel="mean training interactions of the recommended items", title="Popularity of recommendations")
    ax_pop.legend(fontsize=8)
    fig.tight_layout()
    return Figure(
        "Long tail",
        fig,
        "Left: the share of interactions (black) and of each model's top-10 slots taken by the "
        "most popular items; a curve near the black one recommends like the catalogue is used, one far above it "
        "only recommends hits. Right: mean popularity of recommended items against the catalogue's.",
    )


def _activity_figure(activity: pd.DataFrame, models: list[str]) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{a}\n({u} users)" for a, u in zip(activity["activity"], activity["users"])]
    for m in models:
        ax.plot(labels, activity[m], marker="o", label=m)
    ax.set(xlabel="ratings per user", ylabel="RMSE", title="Error by user activity")
    ax.legend()
    return Figure("Error by user activity", fig, "Out-of-fold RMSE per group of users by their number of ratings.")


def _distribution_figure(
    ratings: pd.DataFrame, predictions: pd.DataFrame, models: list[str], lo: float, hi: float
) -> Figure:
    fig, (ax_obs, ax_pred) = plt.subplots(1, 2, figsize=(11, 4))
    counts = ratings["rating"].value_counts(normalize=True).sort_index()
    ax_obs.bar(counts.index.astype(str), counts.to_numpy(), color="C0")
    ax_obs.set(xlabel="rating", ylabel="share of ratings", title="Observed ratings")
    bins = np.linspace(lo, hi, 41)
    for m in models:
        ax_pred.hist(predictions[m], bins=bins, density=True, histtype="step", label=m)
    ax_pred.set(xlabel="predicted rating", ylabel="density", title="Predicted ratings (out of fold)")
    ax_pred.legend()
    return Figure(
        "Rating distributions", fig, "Models shrink towards the mean: few predictions reach the ends of the scale."
    )


def _training_figure(history: dict) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, passes in history.items():
        epochs = [e for h in passes for e in h["epochs"]]  # the passes one after the other
        ax.plot(range(1, len(epochs) + 1), [-e["val_score"] for e in epochs], label=name)
    ax.set(xlabel="epoch (all passes)", ylabel="validation RMSE", title="Torch MF training")
    ax.legend(fontsize=8)
    return Figure(
        "Torch MF training curves",
        fig,
        "Validation RMSE per epoch; each pass keeps its best epoch, the second pass goes on at a lower learning rate.",
    )
