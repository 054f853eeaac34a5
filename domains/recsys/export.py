"""Recommender models as ONNX: each graph gives a block of users a score for every item of its
catalogue, higher is better, as `recommend` ranks them (the k best items a user has not rated).

Two kinds of input, by how the model knows a user:
- a row per training user (MF, BPR): `user`, int64 [users], the user's row in `<model>.user_ids.json`;
- the user's interactions (EASE, item-kNN, VAE): `history`, float32 [users, items], 1 where the user
  rated the item of that column of `<model>.item_ids.json`, else 0; any user with one rated item works.
Parity is judged on the top-k hold-out users evaluate ranked: the largest score difference, and each
user's top-k unseen items (a list may differ only where the model's k-th and next scores tie within
the tolerance). MF's scores are its predicted ratings before clipping to the rating scale.

Surprise's SVD and BaselineOnly are matrix formulas, not graphs: their factors are the export
(`<model>.factors.npz`, with the formula in preprocessing.json), checked against Surprise's own
predictions of the hold-out pairs. SVD++, KNNBaseline and the popularity ranking are named as not converted.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, cast

import joblib
import numpy as np
import pandas as pd
import torch

from domains.common.errors import PipelineError
from domains.common.export import TOLERANCES, Convertible, Exportable, from_torch
from domains.recsys.baselines import predict_surprise
from domains.recsys.metrics import K
from domains.recsys.mf import load_mf
from domains.recsys.params import RecsysParams
from domains.recsys.pipeline import RATINGS, rating_scale
from domains.recsys.ranking import BPR, EASE, ITEM_KNN, ItemItem, TorchRanker, interactions
from domains.recsys.recommend import BATCH_USERS, sample_users
from domains.recsys.train import MF, POPULARITY, model_file

FACTOR_MODELS = ("svd", "baseline_only")  # Surprise models whose estimate is a formula of saved arrays
NOT_CONVERTED = {
    "svdpp": "SVD++ adds each user's implicit-feedback factors at prediction time: not exported",
    "knn_baseline": "KNNBaseline keeps its neighbour similarities inside Surprise: not exported",
    POPULARITY: "the popularity ranking is a table of counts (popularity.parquet in the model), not a graph",
}


class _UserScores(torch.nn.Module):
    """MF or BPR: a training user's row -> scores of every item."""

    def __init__(self, model: torch.nn.Module, kind: str):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, user: torch.Tensor) -> torch.Tensor:
        m = cast(Any, self.model)
        if self.kind == MF:
            u = m.users[user] * m.user_keep + m.user_one
            return m.mean + u @ (m.items * m.item_keep + m.item_one).T
        return m.users[user] @ m.items.T + m.bias


class _HistoryScores(torch.nn.Module):
    """EASE or item-kNN (interactions @ the item-item weights) or the VAE (its decoded mean, eval mode)."""

    weights: torch.Tensor  # buffer

    def __init__(self, weights: np.ndarray | None = None, vae: torch.nn.Module | None = None):
        super().__init__()
        self.vae = vae
        if weights is not None:
            self.register_buffer("weights", torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)))

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return self.vae(history) if self.vae is not None else history @ self.weights


def export_models(p: RecsysParams, model_dir: Path, prepared_dir: Path) -> Exportable:
    ratings = pd.read_parquet(prepared_dir / RATINGS)
    train, holdout = ratings[~ratings["holdout"]], ratings[ratings["holdout"]]
    users = sample_users(holdout, p.evaluate.topk_max_users, p.seed)  # the users evaluate ranked
    models: list[Convertible] = []
    files: dict[str, bytes] = {}
    for name in [MF, *p.train.ranking_models]:
        if model_file(model_dir, name).is_file():
            model, ids = _convertible(name, model_dir, train, users)
            models.append(model)
            files |= ids
    scale = rating_scale(prepared_dir)
    factors, checked = {}, {}
    for name in p.train.surprise_models:
        if name in FACTOR_MODELS and model_file(model_dir, name).is_file():
            files[f"{name}.factors.npz"], checked[name] = _surprise_factors(model_dir, name, holdout, scale)
            factors[name] = f"{name}.factors.npz"
    if not models:
        raise PipelineError("recsys: this model version has no model that converts to ONNX")
    low, high = scale
    preprocessing = {
        "inputs": {
            "user": "int64 [users]: the user's row in <model>.user_ids.json (MF, BPR); a user not listed there is unknown "
            "to the model: recommend the popularity ranking",
            "history": "float32 [users, items]: 1 where the user rated the item of that column of <model>.item_ids.json, "
            "else 0 (EASE, item-kNN, VAE)",
        },
        "ids": "<model>.item_ids.json: the raw item id of each score column; <model>.user_ids.json (MF, BPR): the "
        "raw user id of each row",
        "output": "scores [users, items], higher is better",
        "recommend": f"per user, the {K} highest-scored items the user has not rated (ties: the lower column first)",
        "mf_rating": f"MF's score is its predicted rating; clip to the rating scale [{low:g}, {high:g}]",
        "surprise_factors": {
            "files": factors,
            "svd": "estimate(u, i) = global_mean + bu[u] + bi[i] + pu[u] . qi[i]",
            "baseline_only": "estimate(u, i) = global_mean + bu[u] + bi[i]",
            "unknown": "a user or item not in user_ids / item_ids: its bias and factors are 0",
            "clip": f"to the rating scale [{low:g}, {high:g}], as Surprise's predict does",
            "parity": checked,
        },
    }
    return Exportable(
        models=models,
        labels=np.zeros(len(users), dtype=np.int8),  # the ranked users; no labels: decisions are top-k lists
        threshold=None,
        class_names=[],
        metric="top-k lists",
        preprocessing=preprocessing,
        not_converted={n: NOT_CONVERTED[n] for n in [*p.train.surprise_models, POPULARITY] if n in NOT_CONVERTED},
        files=files,
    )


def _convertible(name: str, model_dir: Path, train: pd.DataFrame, users: np.ndarray) -> tuple[Convertible, dict]:
    """One torch or item-item model, fed the evaluated users it knows, with its reference scores."""
    file = model_file(model_dir, name)  # opened after modelstore checked the model's hash
    module: torch.nn.Module
    if name in (MF, BPR):
        if name == MF:
            net: torch.nn.Module
            net, user_index, item_index = load_mf(file, "cpu")
            item_ids = item_index.to_numpy()
        else:
            ranker = TorchRanker.load(file, "cpu")
            net, user_index, item_ids = ranker.model, pd.Index(ranker.user_ids), ranker.item_ids
        rows = user_index.get_indexer(users)
        rows = rows[rows >= 0].astype(np.int64)
        module = _UserScores(net, name)
        with torch.no_grad():
            reference = _reference(name, net, rows)
        feed = {"user": rows}
        known = user_index[rows].to_numpy()
        ids = {f"{name}.user_ids.json": _ids_json(user_index.to_numpy())}
        example: tuple[torch.Tensor, ...] = (torch.from_numpy(rows[:2]),)
    else:
        if name in (EASE, ITEM_KNN):
            item_item = ItemItem.load(file)
            weights = item_item.weights if isinstance(item_item.weights, np.ndarray) else item_item.weights.toarray()
            module, item_ids = _HistoryScores(weights=weights), item_item.item_ids
        else:
            ranker = TorchRanker.load(file, "cpu")
            module, item_ids = _HistoryScores(vae=ranker.model), ranker.item_ids
        history = interactions(train, pd.Index(users), pd.Index(item_ids)).toarray()
        has_history = history.sum(axis=1) > 0
        history, known = history[has_history], users[has_history]
        with torch.no_grad():
            reference = (
                item_item.score(history)
                if name in (EASE, ITEM_KNN)
                else cast(torch.Tensor, module(torch.from_numpy(history))).float().numpy()
            )
        feed = {"history": history}
        ids = {}
        example = (torch.from_numpy(history[:2]),)
    seen = interactions(train, pd.Index(known), pd.Index(item_ids)).toarray() > 0
    input_name = next(iter(feed))
    convertible = Convertible(
        name,
        "torch",
        lambda: from_torch(module, example, [input_name], ["scores"], {input_name: {0: "users"}}),
        feed,
        reference,
        "scores",
        top_k=K,
        seen=seen,
        chunk=BATCH_USERS,
    )
    return convertible, ids | {f"{name}.item_ids.json": _ids_json(item_ids)}


def _reference(name: str, net: Any, rows: np.ndarray) -> np.ndarray:
    """Scores as `recommend` computes them (MF: predicted ratings before clipping)."""
    torch_rows = torch.from_numpy(rows)
    scores = net.score_items(torch_rows) if name == MF else net.score_users(torch_rows)
    return scores.float().numpy()


def _surprise_factors(
    model_dir: Path, name: str, pairs: pd.DataFrame, scale: tuple[float, float]
) -> tuple[bytes, dict]:
    """A Surprise model's arrays as .npz, and the largest difference of the documented formula's estimates
    from Surprise's own `predict` on the hold-out pairs; outside TOLERANCES["linear"] nothing is exported."""
    algo = joblib.load(model_file(model_dir, name))  # opened after modelstore checked the model's hash
    ts = algo.trainset
    bu, bi = (algo.bu, algo.bi) if name == "svd" else algo.compute_baselines()
    arrays = {
        "user_ids": np.array([ts.to_raw_uid(u) for u in ts.all_users()], dtype=np.int64),
        "item_ids": np.array([ts.to_raw_iid(i) for i in ts.all_items()], dtype=np.int64),
        "global_mean": np.float64(ts.global_mean),
        "bu": np.asarray(bu, dtype=np.float64),
        "bi": np.asarray(bi, dtype=np.float64),
    }
    if name == "svd":
        arrays |= {"pu": np.asarray(algo.pu, dtype=np.float64), "qi": np.asarray(algo.qi, dtype=np.float64)}
    formula = np.clip(_estimate(arrays, pairs["user_id"].to_numpy(), pairs["item_id"].to_numpy()), *scale)
    largest = float(np.abs(formula - predict_surprise(algo, pairs)).max()) if len(pairs) else 0.0
    if largest > TOLERANCES["linear"]:
        raise PipelineError(
            f"recsys {name}: exported factors outside parity bounds: max |estimate - surprise| = {largest:.3g} "
            f"(tolerance {TOLERANCES['linear']:g}); nothing written"
        )
    return _npz(arrays), {"pairs": int(len(pairs)), "max_abs_diff": largest, "tolerance": TOLERANCES["linear"]}


def _estimate(arrays: dict[str, Any], users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The formula preprocessing.json documents, for raw id pairs (unknown ids: zero bias and factors)."""
    u = pd.Index(arrays["user_ids"]).get_indexer(users)
    i = pd.Index(arrays["item_ids"]).get_indexer(items)
    ku, ki = u >= 0, i >= 0
    est = arrays["global_mean"] + np.where(ku, arrays["bu"][u], 0.0) + np.where(ki, arrays["bi"][i], 0.0)
    if "pu" in arrays:
        both = ku & ki
        est[both] += np.einsum("nf,nf->n", arrays["pu"][u[both]], arrays["qi"][i[both]])
    return est


def _npz(arrays: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _ids_json(ids: np.ndarray) -> bytes:
    return json.dumps([int(i) for i in ids]).encode()
