"""Train every model on the same training slice; score the validation and test documents.

Each model is timed on its own: fit on the training documents, predict on the test documents
(seconds in times.json). The torch model stops early on the validation slice; the classical
models take their settings from params (chosen on a validation slice of IMDB, benchmarks/sentiment.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from domains.common.contract import TrainEnv
from domains.sentiment.checks import LABEL_INDEX
from domains.sentiment.features import load_features, orders_up_to
from domains.sentiment.linear import NBSVM, TfidfLogreg
from domains.sentiment.params import ENSEMBLE, SentimentParams
from domains.sentiment.pipeline import DOCUMENTS

PREDICTIONS = "predictions.parquet"  # validation and test documents: item_id, split, label_index, P(positive) per model
TIMES = "times.json"  # model -> fit_seconds, predict_seconds (test documents)
HISTORY = "history.json"  # the torch model's training history (and word-vector coverage)
WEIGHTS = "ngram_weights.parquet"  # per vocabulary n-gram (prepared order): each model's weight towards positive
TORCH_MODEL = "fasttext"


def model_file(train_dir: Path, name: str) -> Path:
    return train_dir / f"{name}{'.pt' if name == TORCH_MODEL else '.joblib'}"


def make_model(name: str, p: SentimentParams, vocabulary: pd.DataFrame, env: TrainEnv) -> Any:
    t = p.train
    if name == "tfidf_logreg":
        return TfidfLogreg(orders_up_to(vocabulary, t.tfidf_ngram_max), t.logreg_c, p.seed)
    if name == "nbsvm":
        return NBSVM(orders_up_to(vocabulary, t.nbsvm_ngram_max), t.nbsvm_c, t.nbsvm_alpha, p.seed)
    from domains.sentiment.fasttext import FastText  # torch only when the torch model is trained

    return FastText(
        vocabulary,
        orders_up_to(vocabulary, t.fasttext_ngram_max),
        t,
        p.seed,
        env.checkpoint_dir / "fasttext.ckpt",
        env.fingerprint,
    )


def train_models(p: SentimentParams, prepared_dir: Path, out_dir: Path, env: TrainEnv) -> None:
    documents = pd.read_parquet(prepared_dir / DOCUMENTS)
    counts, vocabulary = load_features(prepared_dir)
    split, y = documents["split"].to_numpy(), documents[LABEL_INDEX].to_numpy()
    train, val, test = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    if TORCH_MODEL in p.train.models:
        from domains.common.trainer import seed_everything

        # The first deterministic-mode call imports torch's compiler stack (seconds, once per process):
        # paid here, not inside the torch model's timed fit.
        seed_everything(p.seed, p.train.deterministic, p.train.num_threads)

    probabilities: dict[str, dict[str, np.ndarray]] = {}  # model -> split -> P(positive)
    times: dict[str, dict[str, float]] = {}
    weights: dict[str, np.ndarray] = {}
    history: dict[str, Any] = {}
    for name in p.train.models:
        model = make_model(name, p, vocabulary, env)
        began = time.perf_counter()
        fitted = model.fit(counts[train], y[train], counts[val], y[val])
        fit_s = time.perf_counter() - began
        probabilities[name] = {"val": model.predict_proba(counts[val])[:, 1]}
        began = time.perf_counter()
        probabilities[name]["test"] = model.predict_proba(counts[test])[:, 1]
        times[name] = {"fit_seconds": fit_s, "predict_seconds": time.perf_counter() - began}
        weights[name] = model.ngram_weights()
        if name == TORCH_MODEL:
            history = {**fitted.to_json(), "word_vectors": model.vectors_found}
            model.save(model_file(out_dir, name))
        else:
            joblib.dump(model, model_file(out_dir, name))
        _log(
            f"{name}: fit {fit_s:.2f} s, predict {times[name]['predict_seconds']:.2f} s, "
            f"val accuracy {np.mean((probabilities[name]['val'] >= 0.5) == y[val]):.4f}"
        )
    if p.train.ensemble:
        members = p.train.ensemble
        probabilities[ENSEMBLE] = {s: np.mean([probabilities[m][s] for m in members], axis=0) for s in ("val", "test")}
        times[ENSEMBLE] = {k: sum(times[m][k] for m in members) for k in ("fit_seconds", "predict_seconds")}

    scored = {"val": val, "test": test}
    predictions = pd.concat(
        [
            documents.iloc[rows][["item_id", "split", LABEL_INDEX]].assign(
                **{name: probabilities[name][s] for name in probabilities}
            )
            for s, rows in scored.items()
        ],
        ignore_index=True,
    )
    predictions.to_parquet(out_dir / PREDICTIONS)
    pd.DataFrame(weights).to_parquet(out_dir / WEIGHTS)
    (out_dir / TIMES).write_text(json.dumps(times, indent=2))
    (out_dir / HISTORY).write_text(json.dumps(history, indent=2))


def _log(message: str) -> None:
    print(f"[sentiment] {message}", file=sys.stderr, flush=True)
