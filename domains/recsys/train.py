"""Train every model on the same folds (rating prediction), then once more for top-k.

1. For each fold: fit each Surprise model and the torch MF on the other folds, predict this
   fold's ratings; fit and predict times are measured per model and fold.
2. Fit every model on all ratings but the top-k hold-out, and save it: these are the models
   evaluate ranks items with (and the ones a user would deploy), plus the popularity ranking.
3. The implicit-feedback ranking models (ranking.py) on the same ratings, their hyperparameters
   chosen on a validation slice of them: each user's last ratings in time, as the hold-out is cut.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from domains.common.contract import TrainEnv
from domains.common.trainer import seed_everything
from domains.recsys.baselines import make_surprise, popularity, predict_surprise, to_trainset
from domains.recsys.mf import fit_mf, predict_mf, save_mf
from domains.recsys.params import RecsysParams
from domains.recsys.pipeline import RATINGS, rating_scale
from domains.recsys.ranking import BPR, EASE, ITEM_KNN, VAE, fit_ranking
from domains.recsys.split import time_holdout

PREDICTIONS = "predictions.parquet"  # out-of-fold prediction of every rating by every model
TIMES = "times.json"  # model -> fit_seconds / predict_seconds per fold
HISTORY = "history.json"  # MF training history per fit
MF = "mf"  # the torch model's name
POPULARITY = "popularity"
RANKING = "ranking.json"  # ranking model -> fit_seconds, hyperparameter selection, chosen setting


def rating_models(p: RecsysParams) -> list[str]:
    return [*p.train.surprise_models, MF]


def ranking_models(p: RecsysParams) -> list[str]:
    """The implicit-feedback models, then the popularity baseline."""
    return [*p.train.ranking_models, POPULARITY]


def model_file(train_dir: Path, name: str) -> Path:
    """The one place that names a saved model's file."""
    suffix = {MF: ".pt", BPR: ".pt", VAE: ".pt", EASE: ".npz", ITEM_KNN: ".npz", POPULARITY: ".parquet"}.get(
        name, ".joblib"
    )
    return train_dir / f"{name}{suffix}"


def train_models(p: RecsysParams, prepared_dir: Path, out_dir: Path, env: TrainEnv) -> None:
    ratings = pd.read_parquet(prepared_dir / RATINGS)
    scale = rating_scale(prepared_dir)
    # MF tables hold a row for every user and item of the data; one never trained stays near 0.
    user_ids, item_ids = np.unique(ratings["user_id"]), np.unique(ratings["item_id"])
    users = np.searchsorted(user_ids, ratings["user_id"].to_numpy())
    items = np.searchsorted(item_ids, ratings["item_id"].to_numpy())
    y = ratings["rating"].to_numpy(dtype=float)

    # The first deterministic-mode call imports torch's compiler stack (seconds, once per process):
    # pay it here, not inside the first fold's timed MF fit.
    seed_everything(p.seed, p.train.deterministic, p.train.num_threads)
    names = rating_models(p)
    predictions = pd.DataFrame({"fold": ratings["fold"], "rating": y})
    times: dict[str, dict[str, list[float]]] = {n: {"fit_seconds": [], "predict_seconds": []} for n in names}
    histories: dict[str, Any] = {}

    def record(name: str, fold: int, rows: np.ndarray, pred: np.ndarray, fit_s: float, predict_s: float) -> None:
        predictions.loc[rows, name] = pred
        times[name]["fit_seconds"].append(fit_s)
        times[name]["predict_seconds"].append(predict_s)
        _log(f"fold {fold + 1}/{p.prepare.n_folds} {name}: fit {fit_s:.2f} s, predict {predict_s:.2f} s")

    for fold in range(p.prepare.n_folds):  # each lambda below runs at once, inside its iteration
        test = (ratings["fold"] == fold).to_numpy()
        trainset = to_trainset(ratings[~test], scale)
        for name in p.train.surprise_models:
            algo, fit_s = _timed(lambda: make_surprise(name, p.seed).fit(trainset))
            pred, predict_s = _timed(lambda: predict_surprise(algo, ratings[test]))
            record(name, fold, test, pred, fit_s, predict_s)
        (model, passes), fit_s = _timed(
            lambda: fit_mf(
                users[~test],
                items[~test],
                y[~test],
                len(user_ids),
                len(item_ids),
                p.train,
                scale,
                p.seed,
                env.checkpoint_dir / f"mf_fold{fold}.ckpt",
                env.fingerprint,
                f"mf fold {fold + 1}",
            )
        )
        pred, predict_s = _timed(lambda: predict_mf(model, users[test], items[test], scale))
        record(MF, fold, test, pred, fit_s, predict_s)
        histories[f"fold {fold + 1}"] = [h.to_json() for h in passes]

    # Final fits for top-k: everything but each user's held-out last ratings.
    keep = ~ratings["holdout"].to_numpy()
    trainset = to_trainset(ratings[keep], scale)
    for name in p.train.surprise_models:
        _log(f"top-k fit {name}")
        joblib.dump(make_surprise(name, p.seed).fit(trainset), model_file(out_dir, name))
    _log(f"top-k fit {MF}")
    model, passes = fit_mf(
        users[keep],
        items[keep],
        y[keep],
        len(user_ids),
        len(item_ids),
        p.train,
        scale,
        p.seed,
        env.checkpoint_dir / "mf_topk.ckpt",
        env.fingerprint,
        "mf top-k",
    )
    histories["top-k"] = [h.to_json() for h in passes]
    save_mf(model, user_ids, item_ids, model_file(out_dir, MF))
    popularity(ratings[keep]).to_parquet(model_file(out_dir, POPULARITY))
    ranking = fit_ranking_models(p, ratings[keep].reset_index(drop=True), out_dir, env)

    predictions.to_parquet(out_dir / PREDICTIONS)
    (out_dir / TIMES).write_text(json.dumps(times, indent=2))
    (out_dir / HISTORY).write_text(json.dumps(histories, indent=2))
    (out_dir / RANKING).write_text(json.dumps(ranking, indent=2))


def fit_ranking_models(p: RecsysParams, train: pd.DataFrame, out_dir: Path, env: TrainEnv) -> dict[str, Any]:
    """Fit and save each ranking model; validation: each user's last ratings of `train`, as the test hold-out is cut.

    Every validation interaction counts as relevant (the models learn interactions, and train does not
    depend on evaluate's relevance threshold).
    """
    val = time_holdout(train, p.prepare.holdout_per_user, p.prepare.min_train_ratings)
    out: dict[str, Any] = {}
    for name in p.train.ranking_models:
        _log(f"top-k fit {name} (selection on {int(val.sum())} validation ratings)")
        fitted = fit_ranking(name, train, val, float("-inf"), p.train, p.seed, env.checkpoint_dir, env.fingerprint)
        fitted.model.save(model_file(out_dir, name))
        out[name] = {"fit_seconds": fitted.fit_seconds, "chosen": fitted.chosen, "selection": fitted.selection}
    return out


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    began = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - began


def _log(message: str) -> None:
    print(f"[recsys] {message}", file=sys.stderr, flush=True)
