"""Explanations from the models' n-gram weights: what pushes towards each class, and why the most
confident mistakes were made.

Every model here is linear in its n-grams (see linear.py and fasttext.py), so a document's
log-odds are the sum of its n-grams' weights (scaled per document). Highlights are plain text that
reads the same in the HTML report (escaped) and in Markdown: [+great] pushes towards the positive
class, [-boring] towards the negative one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from domains.sentiment.synthetic import FLIPPED
from domains.sentiment.text import tokenise

HIGHLIGHTS = 6  # n-grams marked per document
CONTEXT = 6  # tokens shown either side of a highlight
EXCERPT_TOKENS = 70  # at most, per document


def top_ngrams(weights: pd.DataFrame, vocabulary: pd.DataFrame, classes: list[str], k: int) -> pd.DataFrame:
    """Rank, then per model and class the k n-grams with the largest weight towards it, 'ngram (weight)'.
    `vocabulary` holds each n-gram's train_df (training documents holding it)."""
    names = vocabulary["ngram"].to_numpy()
    table: dict[str, Any] = {"rank": np.arange(1, k + 1)}
    for model in weights.columns:
        w = weights[model].to_numpy()
        for sign, label in ((1, classes[1]), (-1, classes[0])):
            best = strongest(w, vocabulary, sign, k)
            table[f"{model} → {label}"] = [f"{names[i]} ({w[i]:+.2f})" for i in best] + [""] * (k - len(best))
    return pd.DataFrame(table)


def strongest(weights: np.ndarray, vocabulary: pd.DataFrame, sign: int, k: int) -> np.ndarray:
    """Vocabulary indices of the k largest weights towards the positive (sign 1) or negative (-1) class.

    N-grams hashed into one embedding row share its weight: the row is shown by its most frequent
    n-gram, the one that taught it, not by the rare ones that collide with it."""
    by_row = pd.DataFrame({"w": weights, "df": vocabulary["train_df"].to_numpy()})
    distinct = by_row.sort_values("df", ascending=False, kind="stable").drop_duplicates("w").index.to_numpy()
    return distinct[np.argsort(-sign * weights[distinct], kind="stable")[:k]]


def confident_mistakes(
    model: str,
    p_positive: np.ndarray,
    y: np.ndarray,
    documents: pd.DataFrame,
    counts: sp.csr_matrix,
    weights: np.ndarray,
    vocabulary: pd.DataFrame,
    classes: list[str],
    k: int,
    strip_markup: bool,
) -> pd.DataFrame:
    """The k test documents `model` got wrong with the highest confidence, their strongest n-grams marked.

    `documents` and the rows of `counts` are the test documents in the order of `p_positive` and `y`.
    """
    predicted = (p_positive >= 0.5).astype(int)
    wrong = np.flatnonzero(predicted != y)
    worst = wrong[np.argsort(-np.abs(p_positive[wrong] - 0.5), kind="stable")[:k]]
    names = vocabulary["ngram"].to_numpy()
    rows = []
    for i in worst:
        present = counts[i].indices
        strongest = present[np.argsort(-np.abs(weights[present]), kind="stable")[:HIGHLIGHTS]]
        marks = {names[j]: ("+" if weights[j] > 0 else "-") for j in strongest if weights[j] != 0}
        toward_predicted = present[np.argsort(-weights[present] * (1 if predicted[i] else -1), kind="stable")[:5]]
        rows.append(
            {
                "item_id": documents["item_id"].iloc[i],
                "label": classes[y[i]],
                "predicted": classes[predicted[i]],
                f"P({classes[1]})": round(float(p_positive[i]), 4),
                "excerpt (highlighted: the strongest n-grams)": highlight(
                    tokenise(documents["text"].iloc[i], strip_markup), marks
                ),
                f"evidence for the prediction ({model} weight towards {classes[1]})": ", ".join(
                    f"{names[j]} {weights[j]:+.2f}" for j in toward_predicted
                ),
                **(
                    {"label flipped by the generator": bool(documents[FLIPPED].iloc[i])} if FLIPPED in documents else {}
                ),
            }
        )
    return pd.DataFrame(rows)


def highlight(tokens: list[str], marks: dict[str, str]) -> str:
    """The tokens around each occurrence of a marked n-gram, marked [+ngram] or [-ngram] (longest n-grams
    first, no overlaps), with ... where text is left out."""
    sign_at: dict[int, tuple[int, str]] = {}  # start token -> (length, sign)
    taken = np.zeros(len(tokens), dtype=bool)
    for gram in sorted(marks, key=lambda g: -g.count(" ")):
        parts = gram.split(" ")
        n = len(parts)
        for start in range(len(tokens) - n + 1):
            if tokens[start : start + n] == parts and not taken[start : start + n].any():
                sign_at[start] = (n, marks[gram])
                taken[start : start + n] = True
    if not sign_at:
        return " ".join(tokens[:EXCERPT_TOKENS]) + (" ..." if len(tokens) > EXCERPT_TOKENS else "")
    shown = np.zeros(len(tokens), dtype=bool)
    for start, (n, _) in sign_at.items():
        shown[max(0, start - CONTEXT) : start + n + CONTEXT] = True
    pieces: list[str] = []
    i = used = 0
    while i < len(tokens) and used < EXCERPT_TOKENS:
        if not shown[i]:
            if not pieces or pieces[-1] != "...":
                pieces.append("...")
            i += 1
            continue
        if i in sign_at:
            n, sign = sign_at[i]
            pieces.append(f"[{sign}{' '.join(tokens[i : i + n])}]")
            i, used = i + n, used + n
        else:
            pieces.append(tokens[i])
            i, used = i + 1, used + 1
    if i < len(tokens) and pieces[-1] != "...":
        pieces.append("...")
    return " ".join(pieces)
