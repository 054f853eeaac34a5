"""Evaluation helpers: accuracy by length and by stars, top n-grams, the most confident mistakes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from domains.common.classification import binary_proba
from domains.sentiment.evaluate import accuracy_by_length, accuracy_by_stars
from domains.sentiment.explain import confident_mistakes, highlight, top_ngrams

VOCABULARY = pd.DataFrame(
    {"ngram": ["bad", "good", "not good", "plot"], "order": [1, 1, 2, 1], "train_df": [5, 9, 2, 7]}
)
CLASSES = ["neg", "pos"]


def test_accuracy_by_length_groups_of_equal_size_shortest_first():
    n_tokens = np.array([5, 50, 6, 60, 7, 70])
    y = np.array([1, 1, 0, 0, 1, 1])
    probas = {
        "m": binary_proba(np.array([0.9, 0.9, 0.1, 0.9, 0.2, 0.1]))
    }  # short: right, right, wrong; long: right, wrong, wrong
    table = accuracy_by_length(n_tokens, y, probas, groups=2)
    assert table["tokens"].tolist() == ["5-7", "50-70"] and table["documents"].tolist() == [3, 3]
    np.testing.assert_allclose(table["m"], [2 / 3, 1 / 3])


def test_accuracy_by_stars():
    stars = pd.Series([1, 1, 10, 10], dtype="Int64")
    table = accuracy_by_stars(stars, np.array([0, 0, 1, 1]), {"m": binary_proba(np.array([0.1, 0.6, 0.9, 0.9]))})
    assert table.to_dict("list") == {"stars": [1, 10], "documents": [2, 2], "m": [0.5, 1.0]}


def test_top_ngrams_per_model_and_class():
    weights = pd.DataFrame({"nbsvm": [-2.0, 1.5, -1.0, 0.1]})
    table = top_ngrams(weights, VOCABULARY, CLASSES, k=2)
    assert table["nbsvm → pos"].tolist() == ["good (+1.50)", "plot (+0.10)"]
    assert table["nbsvm → neg"].tolist() == ["bad (-2.00)", "not good (-1.00)"]


def test_top_ngrams_of_a_hashed_row_is_its_most_frequent_ngram():
    weights = pd.DataFrame({"fasttext": [-2.0, 1.5, 1.5, 0.1]})  # "good" and "not good" share a row
    assert top_ngrams(weights, VOCABULARY, CLASSES, k=2)["fasttext → pos"].tolist() == ["good (+1.50)", "plot (+0.10)"]


def test_highlight_marks_longest_ngrams_first_with_context():
    tokens = "the plot was not good at all but the music was good and the rest was fine really".split()
    text = highlight(tokens, {"not good": "-", "good": "+"})
    assert text.startswith("the plot was [-not good] at all")
    assert "[+good]" in text and text.count("[") == 2  # "good" inside "not good" is not marked again
    far = highlight(["x"] * 30 + ["bad"] + ["y"] * 30, {"bad": "-"})
    assert far == "... " + " ".join(["x"] * 6) + " [-bad] " + " ".join(["y"] * 6) + " ..."


def test_confident_mistakes_are_the_wrong_documents_most_sure_of_themselves():
    documents = pd.DataFrame(
        {"item_id": ["a", "b", "c", "d"], "text": ["good plot", "not good", "bad plot <br />", "good good"]}
    )
    counts = sp.csr_matrix(np.array([[0, 1, 0, 1], [0, 1, 1, 0], [1, 0, 0, 1], [0, 2, 0, 0]]))
    y = np.array([0, 1, 1, 1])
    p = np.array([0.9, 0.3, 0.01, 0.99])  # a, b, c wrong; c the surest, then a, then b
    weights = np.array([-2.0, 1.5, -1.0, 0.1])
    table = confident_mistakes("nbsvm", p, y, documents, counts, weights, VOCABULARY, CLASSES, 2, strip_markup=True)
    assert table["item_id"].tolist() == ["c", "a"]
    assert table["label"].tolist() == ["pos", "neg"] and table["predicted"].tolist() == ["neg", "pos"]
    assert table.iloc[0]["excerpt (highlighted: the strongest n-grams)"] == "[-bad] [+plot]"  # markup stripped
    assert table.iloc[1]["evidence for the prediction (nbsvm weight towards pos)"] == "good +1.50, plot +0.10"
