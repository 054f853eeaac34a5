"""NBSVM, TF-IDF + logistic regression and the fastText-style torch model on small data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from domains.common.errors import DataError
from domains.common.items import stratified_split
from domains.sentiment.fasttext import Bags, FastText
from domains.sentiment.features import count_ngrams, orders_up_to, presence
from domains.sentiment.linear import NBSVM, TfidfLogreg, log_count_ratios
from domains.sentiment.params import SentimentTrainParams, SyntheticParams
from domains.sentiment.synthetic import generate_reviews
from domains.sentiment.text import tokenise


@pytest.fixture(scope="module")
def data():
    """Counts of clean synthetic reviews: train / val / test masks, labels, vocabulary."""
    docs = generate_reviews(SyntheticParams(n_train=900, n_test=300, noise_rate=0.0), ["neg", "pos"], 7).documents
    y = (docs["label"] == "pos").to_numpy().astype(int)
    split = docs["split"].to_numpy().copy()
    train = np.flatnonzero(split == "train")
    split[train[stratified_split(y[train], 0.15, 0)]] = "val"
    counts, vocabulary = count_ngrams([tokenise(t) for t in docs["text"]], split == "train", 3, 2)
    return {"counts": counts, "vocabulary": vocabulary, "y": y, **{s: split == s for s in ("train", "val", "test")}}


def _accuracy(model, data) -> float:
    return float(np.mean((model.predict_proba(data["counts"][data["test"]])[:, 1] >= 0.5) == data["y"][data["test"]]))


def _fit(model, data):
    c, y, tr, va = data["counts"], data["y"], data["train"], data["val"]
    return model.fit(c[tr], y[tr], c[va], y[va])


def test_log_count_ratios_by_hand():
    x = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32))
    r = log_count_ratios(x, np.array([1, 1, 0]), alpha=1.0)
    # p = 1 + (2, 1), q = 1 + (0, 1): r = log(p / |p|) - log(q / |q|)
    np.testing.assert_allclose(r, np.log(np.array([3, 2]) / 5) - np.log(np.array([1, 2]) / 3))


def test_nbsvm_weights_are_exactly_its_log_odds(data):
    model = _fit(NBSVM(orders_up_to(data["vocabulary"], 3), c=1.0, alpha=1.0, seed=0), data)
    test = data["counts"][data["test"]]
    p = model.predict_proba(test)[:, 1]
    x = presence(test, np.ones(len(data["vocabulary"]), dtype=bool))
    np.testing.assert_allclose(
        np.log(p / (1 - p)), model.model.intercept_[0] + x @ model.ngram_weights(), rtol=1e-4, atol=1e-4
    )
    weights = dict(zip(data["vocabulary"]["ngram"], model.ngram_weights()))
    assert weights["superb"] > 0 > weights["awful"] and weights["not good"] < 0 < weights["good"]


def test_trigrams_let_nbsvm_read_negation_better_than_unigrams(data):
    unigrams = _accuracy(_fit(NBSVM(orders_up_to(data["vocabulary"], 1), 1.0, 1.0, 0), data), data)
    trigrams = _accuracy(_fit(NBSVM(orders_up_to(data["vocabulary"], 3), 1.0, 1.0, 0), data), data)
    assert trigrams > unigrams + 0.03 and trigrams > 0.8


def test_tfidf_logreg_learns_and_uses_only_its_orders(data):
    model = _fit(TfidfLogreg(orders_up_to(data["vocabulary"], 2), c=10.0, seed=0), data)
    assert _accuracy(model, data) > 0.75
    weights = model.ngram_weights()
    assert np.all(weights[data["vocabulary"]["order"].to_numpy() == 3] == 0) and weights.any()


def _fasttext(data, tmp_path: Path, **settings) -> FastText:
    t = SentimentTrainParams(
        **{
            "epochs": 4,
            "batch_size": 32,
            "lr": 0.05,
            "optimizer": "adamw",
            "fasttext_ngram_max": 3,
            "fasttext_buckets": 8192,
            "fasttext_dim": 8,
            "num_threads": 1,
            **settings,
        }
    )
    return FastText(
        data["vocabulary"], orders_up_to(data["vocabulary"], t.fasttext_ngram_max), t, 0, tmp_path / "ft.ckpt", "test"
    )


def test_fasttext_learns_and_its_weights_explain_it_exactly(data, tmp_path):
    model = _fasttext(data, tmp_path)
    history = _fit(model, data)
    assert history.best_score > 0.7 and _accuracy(model, data) > 0.7  # chance: 0.5
    test = data["counts"][data["test"]]
    p = model.predict_proba(test)[:, 1]
    x = presence(test, model.columns)
    out = model.model.out
    bias = float((out.bias[1] - out.bias[0]).detach())
    mean_weight = (x @ model.ngram_weights()[model.columns]) * model.typical_bag / np.maximum(x.getnnz(axis=1), 1)
    np.testing.assert_allclose(np.log(p / (1 - p)), bias + mean_weight, rtol=1e-3, atol=1e-3)


def test_fasttext_same_seed_same_weights(data, tmp_path):
    a, b = _fasttext(data, tmp_path, epochs=2), _fasttext(data, tmp_path, epochs=2)
    _fit(a, data), _fit(b, data)
    assert torch.equal(a.model.embedding, b.model.embedding)


def test_bags_are_the_documents_distinct_rows(data):
    columns = orders_up_to(data["vocabulary"], 2)
    rows = np.arange(len(columns), dtype=np.int64) * 3
    bags = Bags(data["counts"][:5], columns, rows)
    ids, offsets = bags.take(torch.tensor([3, 1]))
    x = presence(data["counts"][:5], columns)
    expected = [rows[np.flatnonzero(columns)][x[i].indices] for i in (3, 1)]
    assert offsets.tolist() == [0, len(expected[0])]
    assert ids.tolist() == [*expected[0], *expected[1]]


@pytest.mark.parametrize("header", [True, False], ids=["fastText .vec", "GloVe .txt"])
def test_word_vectors_initialise_the_word_rows(data, tmp_path, header):
    rng = np.random.default_rng(0)
    words = {"superb": rng.normal(size=8), "awful": rng.normal(size=8), "notaword": rng.normal(size=8)}
    lines = [f"{w} {' '.join(f'{v:.6f}' for v in vec)}" for w, vec in words.items()]
    path = tmp_path / ("vectors.vec" if header else "glove.txt")
    path.write_text("\n".join(([f"{len(words)} 8"] if header else []) + lines) + "\n")
    model = _fasttext(data, tmp_path, word_vectors=str(path))
    assert model.vectors_found["found"] == 2
    index = dict(zip(data["vocabulary"]["ngram"], range(len(data["vocabulary"]))))
    row = model.rows[index["superb"]]
    np.testing.assert_allclose(model.model.embedding[row].detach().numpy(), words["superb"], atol=1e-6)


def test_word_vectors_of_another_dimension_are_refused_in_one_line(data, tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("superb " + " ".join(["0.1"] * 5) + "\n")
    with pytest.raises(DataError, match="holds 5-dimensional vectors; set train.fasttext_dim: 5"):
        _fasttext(data, tmp_path, word_vectors=str(path))
