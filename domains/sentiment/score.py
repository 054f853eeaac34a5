"""Score new documents with a trained sentiment model.

A batch is read by the training loaders (same decoding, same binary-file refusal), gated by the
training checks minus labels and splits, tokenised as prepare did (markup stripped per params) and
counted over the training vocabulary, which is saved with the model at the end of training: the
model sees exactly the features evaluate saw. Drift columns: tokens per document and the share of
tokens outside the training vocabulary; the score drift covers the predicted-class share.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from domains.common.contract import Reference, Scored, ScoreOptions
from domains.common.errors import DataError
from domains.common.modelstore import cached_load
from domains.sentiment.checks import LABEL_INDEX, with_scoring_columns
from domains.sentiment.features import load_features
from domains.sentiment.loaders import iter_aclimdb_batch, iter_csv, iter_unlabelled_folder
from domains.sentiment.params import ENSEMBLE, SentimentParams
from domains.sentiment.pipeline import DOCUMENTS
from domains.sentiment.text import tokenise
from domains.sentiment.train import PREDICTIONS, TORCH_MODEL, model_file

VOCABULARY = "vocabulary.parquet"  # saved with the model: the n-grams (prepared order) its columns refer to


def read_batch(p: SentimentParams, path: Path, source: str) -> pd.DataFrame:
    """Documents in a training layout (or aclImdb's unsup/), labels optional, with the facts the gate checks."""
    return next(read_chunks(p, path, source, 0))


def read_chunks(p: SentimentParams, path: Path, source: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """read_batch in pieces of at most `chunk_rows` documents (0: one piece), in input order."""
    classes = p.data.classes
    if source == "aclimdb":
        pieces = iter_aclimdb_batch(path, classes, chunk_rows)
    elif source == "text-folder":
        pieces = iter_unlabelled_folder(path, chunk_rows)
    else:
        pieces = iter_csv(path, False, chunk_rows)
    return (with_scoring_columns(documents, classes) for documents in pieces)


def reference(p: SentimentParams, prepared_dir: Path, train_dir: Path) -> Reference:
    """The vocabulary (saved next to the model for scoring), the drift columns and the test split's scores.

    The text columns come from the held-out documents (validation and test), not the training ones:
    the training documents made the vocabulary, so their share of unseen tokens is biased low, and a
    new batch of the same kind would look drifted against them.
    """
    _, vocabulary = load_features(prepared_dir)
    vocabulary[["ngram", "order"]].to_parquet(train_dir / VOCABULARY, index=False)
    documents = pd.read_parquet(prepared_dir / DOCUMENTS)
    held_out = documents[documents["split"].isin(["val", "test"])]
    tokens = [tokenise(t, p.prepare.strip_markup) for t in held_out["text"]]
    predictions = pd.read_parquet(train_dir / PREDICTIONS)
    test = predictions[predictions["split"] == "test"]
    models = [c for c in predictions.columns if c not in ("item_id", "split", LABEL_INDEX)]
    return Reference(drift_frame(tokens, _words(vocabulary)), {m: test[m].to_numpy() for m in models})


def score_batch(p: SentimentParams, model_dir: Path, model: str, table: pd.DataFrame, options: ScoreOptions) -> Scored:
    trained = [*p.train.models, *([ENSEMBLE] if len(p.train.ensemble) > 1 else [])]
    if model not in trained:
        raise DataError(f"sentiment: unknown model '{model}'; trained: {', '.join(trained)}")
    counter, words = cached_load(model_dir / VOCABULARY, lambda f: _counter(f, p.prepare.ngram_max))
    tokens = [tokenise(t, p.prepare.strip_markup) for t in table["text"]]
    counts = counter.transform(tokens).tocsr()
    members = p.train.ensemble if model == ENSEMBLE else [model]
    predict = options.predict or (lambda name, x: _predict(model_dir, name, x))
    probability = (
        np.mean([predict(name, counts) for name in members], axis=0)  # as evaluate's ensemble
        if len(table)
        else np.empty(0)
    )  # every row quarantined (where params allow it): nothing to predict

    negative, positive = p.data.classes
    predictions = pd.DataFrame(
        {
            "item_id": table["item_id"].to_numpy(),
            "label": np.where(probability >= 0.5, positive, negative),
            "positive_probability": probability,
        },
        index=table.index,
    )
    notes = [f"label: '{positive}' where positive_probability >= 0.5 (the evaluation's threshold), else '{negative}'"]
    if model == ENSEMBLE:
        notes.append(f"ensemble: the mean probability of {', '.join(members)}")
    carry: _Carry | None = options.carry
    labels = table[LABEL_INDEX].to_numpy()
    labelled = labels >= 0  # a label outside the classes gets past the gate only as a warning
    y, p_y = labels[labelled].astype(np.int8), probability[labelled]
    if carry is not None:
        y, p_y = np.concatenate([carry.labels, y]), np.concatenate([carry.probabilities, p_y])
    rows = len(table) + (carry.rows if carry else 0)
    has_labels = "label" in table or (carry is not None and carry.has_labels)  # some document of the batch has one
    shadow = _shadow(y, p_y) if has_labels else None
    if has_labels:
        notes.append(f"shadow evaluation on the {len(y)} of {rows} documents that have a label")
    drift = drift_frame(tokens, words).set_index(table.index)
    after = _Carry(y, p_y, rows, has_labels) if options.chunked else None
    return Scored(predictions, drift, probability, shadow, notes, after)


@dataclass(frozen=True)
class _Carry:
    """What a chunk hands the next (ScoreOptions.carry): what the batch's shadow evaluation and notes add up."""

    labels: np.ndarray  # the label index of the documents so far that have one (int8)
    probabilities: np.ndarray  # their positive_probability
    rows: int  # documents scored so far
    has_labels: bool  # some document so far has a label column value


def count_over(tokens: list[list[str]], ngrams: pd.Series, ngram_max: int) -> sp.csr_matrix:
    """Counts of each document's 1- to ngram_max-grams over the training vocabulary, in its column order
    (as prepare counted the test documents: n-grams outside it are dropped)."""
    return _vectorizer(ngrams, ngram_max).transform(tokens).tocsr()


def _vectorizer(ngrams: pd.Series, ngram_max: int) -> CountVectorizer:
    return CountVectorizer(
        tokenizer=_as_is,
        preprocessor=_as_is,
        lowercase=False,
        token_pattern=None,
        ngram_range=(1, ngram_max),
        vocabulary={g: i for i, g in enumerate(ngrams)},
        dtype=np.int32,
    )


def _counter(file: Path, ngram_max: int) -> tuple[CountVectorizer, frozenset[str]]:
    """The saved vocabulary as a counter and its words: built once per model (a long-lived scorer reuses it)."""
    vocabulary = pd.read_parquet(file)
    return _vectorizer(vocabulary["ngram"], ngram_max), _words(vocabulary)


def _as_is(tokens: list[str]) -> list[str]:
    return tokens


def _words(vocabulary: pd.DataFrame) -> frozenset[str]:
    return frozenset(vocabulary.loc[vocabulary["order"] == 1, "ngram"])


def drift_frame(tokens: list[list[str]], words: frozenset[str]) -> pd.DataFrame:
    """Tokens per document, and the share of them outside the training vocabulary's words (0 for no tokens)."""
    n = np.array([len(t) for t in tokens], dtype=np.int64)
    unseen = np.array([sum(w not in words for w in t) for t in tokens], dtype=np.float64)
    return pd.DataFrame({"n_tokens": n, "unseen_share": np.divide(unseen, n, out=np.zeros(len(n)), where=n > 0)})


def _predict(model_dir: Path, name: str, counts: sp.csr_matrix) -> np.ndarray:
    file = model_file(model_dir, name)
    if name == TORCH_MODEL:
        from domains.sentiment.fasttext import load_fasttext  # torch only when the torch model scores

        return cached_load(file, load_fasttext)(counts)[:, 1]
    return cached_load(file, joblib.load).predict_proba(counts)[
        :, 1
    ]  # opened only after modelstore checked its DVC hash


def _shadow(y: np.ndarray, probability: np.ndarray) -> dict[str, float] | None:
    from sklearn.metrics import roc_auc_score

    if not len(y):
        return None
    metrics = {
        "accuracy": float(np.mean((probability >= 0.5) == (y == 1))),
        "labelled": len(y),
        "positive_share": float(np.mean(y == 1)),
    }
    if len(np.unique(y)) == 2:
        metrics["auroc"] = float(roc_auc_score(y, probability))
    return metrics
