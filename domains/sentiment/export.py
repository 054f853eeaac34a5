"""Sentiment models as ONNX. The fastText-style model through torch.onnx.export: its graph takes each
document's embedding rows, padded (`ids` [items, n] int64, `lengths` [items]); the linear models
through skl2onnx: TF-IDF + logistic regression takes n-gram counts, NBSVM (its naive-Bayes ratios
folded into the regression's weights, the same function) n-gram counts too. Tokenising and
finding a document's n-grams happen before the graphs: preprocessing.json says how, and the
vocabulary files list the n-grams each model reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from domains.common.errors import PipelineError
from domains.common.export import Convertible, Exportable, from_sklearn, from_torch
from domains.sentiment.checks import LABEL_INDEX
from domains.sentiment.features import load_features
from domains.sentiment.params import ENSEMBLE, SentimentParams
from domains.sentiment.pipeline import DOCUMENTS
from domains.sentiment.score import VOCABULARY
from domains.sentiment.text import MARKUP, TOKEN
from domains.sentiment.train import TORCH_MODEL, model_file


class PaddedBags(nn.Module):
    """BagOfNgrams over padded rows: the mean of each document's first `lengths` embedding rows, then the
    linear layer and a softmax. The same arithmetic as the trained model's index_add, in a form every
    ONNX runtime has (Gather, a mask, a sum)."""

    def __init__(self, embedding: torch.Tensor, out: nn.Linear):
        super().__init__()
        self.embedding = nn.Parameter(embedding.detach().clone(), requires_grad=False)
        self.out = out

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        present = (positions < lengths.unsqueeze(1)).to(self.embedding.dtype)
        summed = (nn.functional.embedding(ids, self.embedding) * present.unsqueeze(-1)).sum(1)
        return torch.softmax(self.out(summed / lengths.clamp(min=1).unsqueeze(1).to(summed.dtype)), dim=-1)


def padded(counts: sp.csr_matrix, columns: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each document's distinct n-grams the model reads, as embedding rows padded with 0, and how many."""
    x = counts[:, columns].tocsr()
    lengths = np.diff(x.indptr).astype(np.int64)
    ids = np.zeros((x.shape[0], max(int(lengths.max(initial=0)), 2)), dtype=np.int64)
    ids[np.arange(ids.shape[1]) < lengths[:, None]] = rows[columns][x.indices]  # row-major: each document's in turn
    return ids, lengths


def export_models(p: SentimentParams, model_dir: Path, prepared_dir: Path) -> Exportable:
    documents = pd.read_parquet(prepared_dir / DOCUMENTS)
    counts, vocabulary = load_features(prepared_dir)
    if not pd.read_parquet(model_dir / VOCABULARY)["ngram"].equals(vocabulary["ngram"]):
        raise PipelineError("sentiment: the prepared split's vocabulary is not the one the model was trained on")
    test = np.flatnonzero(documents["split"].to_numpy() == "test")
    x = counts[test]
    ngrams = vocabulary["ngram"].to_numpy()
    models, files, inputs = [], {}, {}
    not_converted: dict[str, str] = {}
    for name in p.train.models:
        file = model_file(model_dir, name)
        loaded: Any = None if name == TORCH_MODEL else joblib.load(file)  # opened after modelstore checked its hash
        if name == "tfidf_logreg" and loaded.tfidf.sublinear_tf:
            not_converted[name] = (
                "skl2onnx 1.20 converts sublinear TF as log(1 + tf) where scikit-learn computes "
                "1 + log(tf): the graph would not be this model"
            )
            continue
        if name == TORCH_MODEL:
            model, columns, rows, inputs[name] = _fasttext(file, x)
            vocab_file = "fasttext_vocabulary.tsv"
        else:
            rows = None
            model, columns = _linear(name, loaded, x)
            vocab_file = f"{name}_vocabulary.txt"
            inputs[name] = {
                "x": f"float32 [items, {int(columns.sum())}]: how often the document holds each n-gram "
                f"of {vocab_file}, in its line order (other n-grams are dropped)"
            }
        models.append(model)
        files[vocab_file] = _vocabulary_file(ngrams, columns, rows)
    t, (negative, positive) = p.train, p.data.classes
    ngram_max = {"tfidf_logreg": t.tfidf_ngram_max, "nbsvm": t.nbsvm_ngram_max, TORCH_MODEL: t.fasttext_ngram_max}
    preprocessing = {
        "tokenise": {
            "strip_markup": p.prepare.strip_markup,
            "markup_pattern": MARKUP.pattern,
            "apostrophes": "U+2019, U+2018, U+00B4 and ` become '",
            "lowercase": True,
            "token_pattern": TOKEN.pattern,
            "description": "when strip_markup, every markup_pattern match becomes a space; apostrophes are "
            "unified; the text is lower-cased; the tokens are token_pattern's matches in order "
            "(domains/sentiment/text.py:tokenise)",
        },
        "ngrams": "1- to ngram_max-grams of consecutive tokens, joined by one space ('not very good')",
        "models": {name: {"ngram_max": ngram_max[name], "inputs": inputs[name]} for name in inputs},
        "output": "'probabilities' [items, 2]: column 1 is P(positive)",
        "decision": f"'{positive}' when P(positive) >= 0.5, else '{negative}'",
    }
    if len(t.ensemble) > 1:
        not_converted[ENSEMBLE] = (
            f"the mean of the exported {' and '.join(t.ensemble)} P(positive): computed from "
            "their files, no graph of its own"
        )
    return Exportable(
        models=models,
        labels=documents[LABEL_INDEX].to_numpy()[test],
        threshold=0.5,
        class_names=[negative, positive],
        metric="accuracy",
        preprocessing=preprocessing,
        not_converted=not_converted,
        files=files,
    )


def _fasttext(file: Path, x: sp.csr_matrix) -> tuple[Convertible, np.ndarray, np.ndarray, dict]:
    from domains.sentiment.fasttext import BagOfNgrams, load_fasttext

    saved = torch.load(file, map_location="cpu", weights_only=True)  # tensors and plain values: no code runs
    columns, rows = saved["columns"].numpy(), saved["rows"].numpy()
    n_rows, dim = saved["state_dict"]["embedding"].shape
    trained = BagOfNgrams(n_rows, dim, seed=0)
    trained.load_state_dict(saved["state_dict"])
    graph = PaddedBags(trained.embedding, trained.out).eval()
    ids, lengths = padded(x, columns, rows)
    reference = load_fasttext(file)(x)[:, 1]  # as train and scoring compute it
    example = (torch.from_numpy(ids[:2]), torch.from_numpy(lengths[:2]))
    model = Convertible(
        TORCH_MODEL,
        "torch",
        lambda: from_torch(
            graph,
            example,
            ["ids", "lengths"],
            ["probabilities"],
            {"ids": {0: "items", 1: "ngrams"}, "lengths": {0: "items"}},
        ),
        {"ids": ids, "lengths": lengths},
        reference,
        "probabilities",
        column=1,
        quantize="dynamic",
    )
    inputs = {
        "ids": "int64 [items, n]: the embedding rows (fasttext_vocabulary.tsv) of the document's distinct "
        "n-grams in the file, any order, padded with 0 to the longest",
        "lengths": "int64 [items]: how many of each row of ids are the document's",
    }
    return model, columns, rows, inputs


def _linear(name: str, model: Any, x: sp.csr_matrix) -> tuple[Convertible, np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Binarizer

    columns = model.columns
    n = int(columns.sum())
    if name == "tfidf_logreg":
        estimator = make_pipeline(model.tfidf, model.model)
    else:  # NBSVM: presence x ratio, then the regression == presence, then the regression with weights x ratio
        folded = LogisticRegression()
        folded.coef_ = model.model.coef_ * model.ratios.astype(np.float32)  # the ratios as predict_proba applies them
        folded.intercept_, folded.classes_, folded.n_features_in_ = model.model.intercept_, model.model.classes_, n
        estimator = make_pipeline(Binarizer(threshold=0.0).fit(np.zeros((1, n))), folded)
    reference = model.predict_proba(x)[:, 1]
    feed = {"x": x[:, columns].astype(np.float32).tocsr()}
    return Convertible(
        name, "linear", lambda: from_sklearn(estimator, n), feed, reference, "probabilities", column=1
    ), columns


def _vocabulary_file(ngrams: np.ndarray, columns: np.ndarray, rows: np.ndarray | None) -> bytes:
    """The n-grams a model reads, one a line in its input order (with the embedding row, tab-separated, for fastText)."""
    if rows is None:
        return "".join(f"{g}\n" for g in ngrams[columns]).encode()
    return "".join(f"{g}\t{r}\n" for g, r in zip(ngrams[columns], rows[columns])).encode()
