"""The synthetic generator: seeded, MovieLens-like structure, and an exact noise floor."""

import numpy as np
import pandas as pd
import pytest

from domains.recsys.params import SyntheticParams
from domains.recsys.synthetic import generate_ratings, rating_moments

SMALL = SyntheticParams(n_users=200, n_items=300, n_ratings=12_000)


@pytest.fixture(scope="module")
def data():
    return generate_ratings(SMALL, seed=5)


def test_same_seed_same_data_other_seed_other_data(data):
    pd.testing.assert_frame_equal(data.ratings, generate_ratings(SMALL, seed=5).ratings)
    assert not data.ratings.equals(generate_ratings(SMALL, seed=6).ratings)


def test_canonical_columns_scale_and_unique_pairs(data):
    r = data.ratings
    assert list(r.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert set(r["rating"]) <= {1, 2, 3, 4, 5} and r["rating"].nunique() == 5
    assert not r.duplicated(["user_id", "item_id"]).any()
    assert r["user_id"].min() == 1 and r["item_id"].min() >= 1  # 1-based, as MovieLens
    start = pd.Timestamp(SMALL.start_date).timestamp()
    assert r["timestamp"].between(start, start + SMALL.n_days * 86_400).all()
    assert len(r) == pytest.approx(SMALL.n_ratings, rel=0.05)


def test_realistic_structure(data):
    per_user = data.ratings["user_id"].value_counts()
    per_item = data.ratings["item_id"].value_counts()
    assert per_user.min() >= SMALL.min_user_ratings and per_item.min() >= SMALL.min_item_ratings
    assert per_user.max() > 5 * per_user.median()  # a few very active users
    top_decile = per_item.sort_values(ascending=False).iloc[: len(per_item) // 10].sum() / len(data.ratings)
    assert top_decile > 0.3  # long-tailed popularity: 10% of items take a third of the ratings
    assert list(data.items.columns) == ["item_id", "title"] and len(data.items) == SMALL.n_items


def test_rating_moments_match_monte_carlo():
    latent = np.array([0.2, 1.4, 3.0, 4.6, 6.0])
    mean, var = rating_moments(latent, 0.8, 1, 5)
    draws = np.clip(np.round(latent[:, None] + np.random.default_rng(0).normal(0, 0.8, (5, 200_000))), 1, 5)
    np.testing.assert_allclose(mean, draws.mean(axis=1), atol=0.01)
    np.testing.assert_allclose(var, draws.var(axis=1), atol=0.01)


def test_noise_floor_is_what_the_true_model_achieves(data):
    truth = data.truth
    floor = np.sqrt(truth["rating_variance"].mean())
    oracle = np.sqrt(np.mean((truth["expected_rating"] - data.ratings["rating"]) ** 2))
    assert oracle == pytest.approx(floor, rel=0.03)
    assert 0.4 < floor < SMALL.noise_std + 0.1  # rounding adds to the noise, clipping takes away
