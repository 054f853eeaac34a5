"""Seeded synthetic ratings with MovieLens-like structure and a known noise floor.

The latent rating of user u for item i is  m = mean + b_u + b_i + p_u . q_i  (biases, low-rank
tastes); the observed rating is  clip(round(m + noise), min, max)  with Gaussian noise of a known
standard deviation. Because the model is known, so is the best achievable error: the expected
rating E[r | m] is the best possible prediction, and its RMSE is sqrt(mean Var[r | m]) (the noise
floor shown in the report). Who rates what is realistic too: ratings per user are log-normal
(a few very active users), item popularity is Zipf-like (a long tail), popular items are rated
a little higher, users rather rate items they expect to like (ratings are missing not at
random), and each user rates during their own active period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr

from domains.common.errors import PipelineError
from domains.recsys.params import SyntheticParams

DAY_S = 86_400
POPULARITY_BIAS_CORRELATION = 0.3  # popular items are rated a little higher, as in MovieLens
_CHUNK_CELLS = 4_000_000  # bounds the users x items work arrays to ~32 MB


@dataclass
class SyntheticRatings:
    ratings: pd.DataFrame  # canonical: user_id, item_id, rating, timestamp
    items: pd.DataFrame  # item_id, title
    truth: pd.DataFrame  # user_id, item_id, expected_rating, rating_variance (what no model can beat)
    noise_std: float


def generate_ratings(p: SyntheticParams, seed: int) -> SyntheticRatings:
    try:
        start = int(pd.Timestamp(p.start_date).timestamp())
    except ValueError:
        raise PipelineError(f"synthetic.start_date: not a date: {p.start_date!r}") from None
    rng = np.random.default_rng(seed)
    n_u, n_i = p.n_users, p.n_items

    # Who rates what: per-user counts (log-normal tail) and per-item popularity (Zipf).
    counts = _ratings_per_user(rng, p)
    popularity = 1.0 / np.arange(1, n_i + 1) ** p.popularity_exponent
    popularity = popularity[rng.permutation(n_i)]  # item ids carry no popularity order

    # What they think: biases and tastes (the noise comes later, on the ratings actually given).
    log_pop = np.log(popularity)
    z_pop = (log_pop - log_pop.mean()) / (log_pop.std() or 1.0)
    item_bias = p.item_bias_std * (
        POPULARITY_BIAS_CORRELATION * z_pop + np.sqrt(1 - POPULARITY_BIAS_CORRELATION**2) * rng.normal(size=n_i)
    )
    user_bias = rng.normal(0, p.user_bias_std, n_u)
    factor_std = np.sqrt(p.taste_std / np.sqrt(p.rank))  # so that p_u . q_i has std taste_std
    user_factors = rng.normal(0, factor_std, (n_u, p.rank))
    item_factors = rng.normal(0, factor_std, (n_i, p.rank))

    # Who rates what: popular items, and items the user expects to like (ratings are not missing at random).
    def affinity(rows: slice) -> np.ndarray:
        return log_pop[None, :] + p.selection_strength * (item_bias[None, :] + user_factors[rows] @ item_factors.T)

    rated = _choose_items(rng, counts, affinity)
    _top_up_items(rng, rated, p.min_item_ratings)
    users, items = np.nonzero(rated)
    latent = (
        p.global_mean
        + user_bias[users]
        + item_bias[items]
        + np.einsum("nk,nk->n", user_factors[users], item_factors[items])
    )
    noisy = latent + rng.normal(0, p.noise_std, len(latent))
    rating = np.clip(np.round(noisy), p.rating_min, p.rating_max)
    expected, variance = rating_moments(latent, p.noise_std, p.rating_min, p.rating_max)

    # When: each user is active during their own period of the time span.
    span = p.n_days * DAY_S
    first = rng.uniform(0, span, n_u)
    length = rng.uniform(0, 1, n_u) * (span - first)
    seconds = first[users] + rng.uniform(0, 1, len(users)) * length[users]

    order = rng.permutation(len(users))  # files such as u.data are not sorted
    ratings = pd.DataFrame(
        {
            "user_id": users[order] + 1,  # 1-based ids, as in MovieLens
            "item_id": items[order] + 1,
            "rating": rating[order].astype(np.int64),
            "timestamp": start + seconds[order].astype(np.int64),
        }
    )
    truth = pd.DataFrame(
        {
            "user_id": ratings["user_id"],
            "item_id": ratings["item_id"],
            "expected_rating": expected[order],
            "rating_variance": variance[order],
        }
    )
    rank = np.empty(n_i, dtype=np.int64)
    rank[np.argsort(-popularity, kind="stable")] = np.arange(1, n_i + 1)
    titles = pd.DataFrame(
        {"item_id": np.arange(1, n_i + 1), "title": [f"Item {i + 1} (popularity #{r})" for i, r in enumerate(rank)]}
    )
    return SyntheticRatings(ratings, titles, truth, p.noise_std)


def rating_moments(latent: np.ndarray, noise_std: float, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of clip(round(latent + N(0, noise_std^2)), lo, hi), exactly, per rating."""
    values = np.arange(lo, hi + 1, dtype=float)
    if noise_std == 0:
        r = np.clip(np.round(latent), lo, hi)
        return r, np.zeros_like(r)
    # P(r = v) = P(v - 0.5 <= latent + noise < v + 0.5), the end values taking the tails.
    upper = np.append(values[:-1] + 0.5, np.inf)
    lower = np.insert(values[1:] - 0.5, 0, -np.inf)
    prob = ndtr((upper[None, :] - latent[:, None]) / noise_std) - ndtr((lower[None, :] - latent[:, None]) / noise_std)
    mean = prob @ values
    return mean, prob @ values**2 - mean**2


def _ratings_per_user(rng: np.random.Generator, p: SyntheticParams) -> np.ndarray:
    """At least min_user_ratings each; the rest shared out in log-normal proportions (a heavy tail)."""
    cap = max(p.min_user_ratings, int(0.8 * p.n_items))
    extra = max(p.n_ratings - p.n_users * p.min_user_ratings, 0)
    weights = rng.lognormal(0.0, p.activity_sigma, p.n_users)
    counts = p.min_user_ratings + np.floor(extra * weights / weights.sum()).astype(np.int64)
    return np.minimum(counts, cap)


def _choose_items(rng: np.random.Generator, counts: np.ndarray, affinity) -> np.ndarray:
    """Boolean (user, item): each user's `count` items, drawn without replacement with weights exp(affinity).

    Gumbel-top-k: the k largest of affinity + Gumbel noise are a weighted sample without
    replacement, so all users are drawn at once (in chunks of users) with no Python loop.
    `affinity(rows)` gives the (users in rows, items) log-weights.
    """
    n_u = len(counts)
    n_i = affinity(slice(0, 1)).shape[1]
    rated = np.zeros((n_u, n_i), dtype=bool)
    step = max(1, _CHUNK_CELLS // n_i)
    for s in range(0, n_u, step):
        rows = slice(s, min(s + step, n_u))
        keys = affinity(rows) + rng.gumbel(size=(rows.stop - s, n_i))
        order = np.argsort(-keys, axis=1)
        take = np.arange(n_i)[None, :] < counts[rows, None]
        chosen = np.repeat(np.arange(len(order)), take.sum(axis=1))
        rated[s + chosen, order[take]] = True
    return rated


def _top_up_items(rng: np.random.Generator, rated: np.ndarray, minimum: int) -> None:
    """Give items rated fewer than `minimum` times extra ratings from random users (in place)."""
    for item in np.flatnonzero(rated.sum(axis=0) < minimum):
        missing = minimum - int(rated[:, item].sum())
        candidates = np.flatnonzero(~rated[:, item])
        rated[rng.choice(candidates, size=missing, replace=False), item] = True
