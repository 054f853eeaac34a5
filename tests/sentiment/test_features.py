"""Tokenisation and n-gram counts: the vocabulary comes from the training documents only."""

from __future__ import annotations

import numpy as np

from domains.sentiment.features import count_ngrams, orders_up_to, presence
from domains.sentiment.text import decode, is_binary, markup_count, tokenise


def test_tokenise_strips_markup_lowercases_and_keeps_negations():
    text = "It ISN\u2019T good!<br /><br />Caf\u00e9's 10/10 &amp; re-made?"
    assert tokenise(text) == ["it", "isn't", "good", "!", "café's", "10", "10", "re", "made", "?"]
    assert "br" in tokenise(text, strip_markup=False)
    assert markup_count(text) == 3


def test_decode_and_binary_sniffing():
    assert decode("caf\u00e9".encode()) == ("caf\u00e9", "")
    assert decode(b"\xef\xbb\xbfok") == ("ok", "")
    assert decode(b"ok \xff") == ("ok \ufffd", "byte 0xff at offset 3 is not UTF-8")
    assert is_binary(b"\x89PNG\r\n\x1a\n\x00\x00") and is_binary("hi".encode("utf-16"))
    assert not is_binary("Un film tr\u00e8s r\u00e9ussi.\n".encode()) and not is_binary(b"")


def test_vocabulary_is_fitted_on_the_training_rows_only():
    tokens = [["good", "film"], ["not", "good"], ["good", "film"], ["unseen", "words", "here"]]
    fit = np.array([True, True, True, False])
    counts, vocabulary = count_ngrams(tokens, fit, ngram_max=2, min_df=1)
    names = vocabulary["ngram"].tolist()
    assert set(names) == {"good", "film", "not", "good film", "not good"}  # nothing from the last document
    assert counts.shape == (4, 5) and counts[3].nnz == 0
    assert dict(zip(names, vocabulary["train_df"])) == {"film": 2, "good": 3, "good film": 2, "not": 1, "not good": 1}
    assert dict(zip(names, vocabulary["order"])) == {"film": 1, "good": 1, "good film": 2, "not": 1, "not good": 2}
    row = dict(zip(names, counts[1].toarray().ravel()))
    assert row == {"film": 0, "good": 1, "good film": 0, "not": 1, "not good": 1}


def test_min_df_and_row_order_follow_the_documents():
    tokens = [["a", "b"], ["z"], ["a", "c"], ["a", "b"]]
    counts, vocabulary = count_ngrams(tokens, np.array([True, False, True, True]), ngram_max=1, min_df=2)
    assert vocabulary["ngram"].tolist() == ["a", "b"]  # c is in one training document only
    assert counts.toarray().tolist() == [[1, 1], [0, 0], [1, 0], [1, 1]]


def test_views_select_orders_and_binarise():
    counts, vocabulary = count_ngrams([["good", "good", "film"], ["bad", "film"]], np.array([True, True]), 2, 1)
    unigrams = orders_up_to(vocabulary, 1)
    assert vocabulary.loc[unigrams, "ngram"].tolist() == ["bad", "film", "good"]
    assert presence(counts, unigrams).toarray().tolist() == [[0, 1, 1], [1, 1, 0]]
