"""N-gram counts fitted on the training documents only, and the views the models take of them.

One count matrix serves every model (rows: documents, columns: the training vocabulary of 1- to
ngram_max-grams): TF-IDF and NBSVM select the orders they use, the torch model reads each row's
n-gram ids as a bag. Test documents are counted over the training vocabulary: n-grams only they
hold are dropped, as a deployed model would drop them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from domains.common.errors import PipelineError

COUNTS = "counts.npz"  # documents x vocabulary, int32, rows in documents.parquet's order
VOCABULARY = "vocabulary.parquet"  # ngram, order, train_df (documents of the fitting rows holding it)


def _as_is(tokens: list[str]) -> list[str]:
    return tokens


def count_ngrams(
    tokens: list[list[str]], fit_rows: np.ndarray, ngram_max: int, min_df: int
) -> tuple[sp.csr_matrix, pd.DataFrame]:
    """Counts of every document over the vocabulary of the `fit_rows` documents (n-grams held by at
    least `min_df` of them)."""
    vectorizer = CountVectorizer(
        tokenizer=_as_is,
        preprocessor=_as_is,
        lowercase=False,
        token_pattern=None,
        ngram_range=(1, ngram_max),
        min_df=min_df,
        dtype=np.int32,
    )
    fit_rows = np.asarray(fit_rows, dtype=bool)
    try:
        fitted = vectorizer.fit_transform([t for t, f in zip(tokens, fit_rows) if f])
    except ValueError as err:  # "After pruning, no terms remain" / "empty vocabulary"
        raise PipelineError(
            f"prepare: no n-gram vocabulary from {int(fit_rows.sum())} training documents "
            f"(prepare.min_df={min_df}): {err}"
        ) from None
    rest = vectorizer.transform([t for t, f in zip(tokens, fit_rows) if not f])
    order = np.concatenate([np.flatnonzero(fit_rows), np.flatnonzero(~fit_rows)])
    counts = sp.vstack([fitted, rest]).tocsr()[np.argsort(order)]
    names = vectorizer.get_feature_names_out()
    vocabulary = pd.DataFrame(
        {
            "ngram": names,
            "order": np.char.count(names.astype(str), " ").astype(np.int8) + 1,
            "train_df": np.diff(fitted.tocsc().indptr).astype(np.int64),
        }
    )
    return counts, vocabulary


def save_features(counts: sp.csr_matrix, vocabulary: pd.DataFrame, out_dir: Path) -> None:
    sp.save_npz(out_dir / COUNTS, counts, compressed=False)  # large for real corpora; loading speed matters more
    vocabulary.to_parquet(out_dir / VOCABULARY)


def load_features(prepared_dir: Path) -> tuple[sp.csr_matrix, pd.DataFrame]:
    return sp.load_npz(prepared_dir / COUNTS).tocsr(), pd.read_parquet(prepared_dir / VOCABULARY)


def presence(counts: sp.csr_matrix, columns: np.ndarray) -> sp.csr_matrix:
    """1 where the document holds the n-gram, over the selected columns (float32)."""
    selected = counts[:, columns] if not columns.all() else counts
    out = selected.astype(np.float32)
    out.data[:] = 1.0
    return out.tocsr()


def orders_up_to(vocabulary: pd.DataFrame, n: int) -> np.ndarray:
    """Boolean mask of the vocabulary's 1- to n-grams."""
    return vocabulary["order"].to_numpy() <= n
