"""The synthetic reviews: seeded, balanced, their sentiment known exactly, their label noise at the stated rate."""

from __future__ import annotations

import math
import random

import pandas as pd

from domains.sentiment.params import SyntheticParams
from domains.sentiment.synthetic import ADJECTIVES, HEDGES, INTENSIFIERS, _opinion, generate_reviews, noise_floor

CLASSES = ["neg", "pos"]


def test_same_seed_same_reviews_and_other_seed_other_reviews():
    p = SyntheticParams(n_train=50, n_test=30)
    a, b, c = (generate_reviews(p, CLASSES, seed) for seed in (1, 1, 2))
    pd.testing.assert_frame_equal(a.documents, b.documents)
    assert not a.documents["text"].equals(c.documents["text"])


def test_sizes_balance_and_uniqueness():
    reviews = generate_reviews(SyntheticParams(n_train=200, n_test=100, noise_rate=0.0), CLASSES, 0)
    docs = reviews.documents
    assert docs.groupby("split").size().to_dict() == {"test": 100, "train": 200}
    assert docs.groupby("split")["label"].value_counts().tolist() == [50, 50, 100, 100]
    assert docs["text"].is_unique


def test_the_clean_label_is_the_sign_of_the_lexicon_score():
    truth = generate_reviews(SyntheticParams(n_train=300, n_test=20), CLASSES, 0).truth
    assert ((truth["score"] > 0) == (truth["clean_label"] == 1)).all() and (truth["score"] != 0).all()


def test_label_noise_at_the_stated_rate_and_the_floor_that_follows():
    reviews = generate_reviews(SyntheticParams(n_train=3000, n_test=1000, noise_rate=0.1), CLASSES, 0)
    flipped = reviews.truth["flipped"]
    assert abs(flipped.mean() - 0.1) < 0.015
    observed = reviews.documents["label"].map({"neg": 0, "pos": 1})
    assert ((observed != reviews.truth["clean_label"]) == flipped).all()
    floor = noise_floor(0.1, flipped)
    assert floor["best_accuracy"] == 0.9 and floor["oracle_accuracy"] == 1 - flipped.mean()
    assert math.isclose(floor["best_log_loss"], -(0.1 * math.log(0.1) + 0.9 * math.log(0.9)))


def _value(sentence: str) -> float:
    """The lexicon's value of one opinion sentence, read back from its words."""
    words = sentence.lower().rstrip(".").split()
    adjective = next(w for w in words if any(w in v for v in ADJECTIVES.values()))
    strength = next(s for s, v in ADJECTIVES.items() if adjective in v)
    text = " ".join(words)
    factor = next((f for m, f in {**INTENSIFIERS, **HEDGES}.items() if f" {m} {adjective}" in f" {text}"), 1.0)
    negated = any(n in words for n in ("not", "never", "wasn't", "isn't"))
    return strength * factor * (-0.5 if negated else 1.0)


def test_negation_flips_and_halves_intensifiers_double():
    rng, p = random.Random(0), SyntheticParams(negation_rate=0.5, intensifier_rate=0.5)
    opinions = [_opinion(rng, p, polarity) for polarity in (1, -1) * 200]
    assert all(math.isclose(_value(text), value) for text, value in opinions)
    assert any("not very" in t or "never very" in t or "n't very" in t for t, _ in opinions)  # "not very good"
    assert all(value * polarity > 0 for (_, value), polarity in zip(opinions, (1, -1) * 200))
