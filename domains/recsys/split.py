"""The two evaluation protocols, and the facts about the data that the report records.

- Rating prediction: Surprise's benchmark protocol, k-fold over all ratings; each rating's fold
  is written once, so every model sees exactly the same folds.
- Top-k: for each user with enough ratings, the last n ratings in time are held out; models
  are fitted on everything else and must find the held-out items among all unseen ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def assign_folds(n: int, n_folds: int, seed: int) -> np.ndarray:
    """Fold index per row: a seeded shuffle cut into n_folds near-equal parts (Surprise's KFold)."""
    folds = np.empty(n, dtype=np.int64)
    folds[np.random.default_rng(seed).permutation(n)] = np.arange(n) % n_folds
    return folds


def time_holdout(ratings: pd.DataFrame, per_user: int, min_train: int) -> np.ndarray:
    """True for each user's last `per_user` ratings by time, for users keeping >= min_train ratings.

    Ties in time are broken by item id, so the result does not depend on row order.
    """
    order = np.lexsort((ratings["item_id"].to_numpy(), ratings["timestamp"].to_numpy(), ratings["user_id"].to_numpy()))
    users = pd.Series(ratings["user_id"].to_numpy()[order])  # by user, then time
    counts = users.map(users.value_counts()).to_numpy()
    from_end = counts - 1 - users.groupby(users).cumcount().to_numpy()  # 0: the user's last rating
    sorted_mask = (from_end < per_user) & (counts >= per_user + min_train)
    mask = np.empty(len(order), dtype=bool)
    mask[order] = sorted_mask
    return mask


def per_user_random_split(ratings: pd.DataFrame, test_share: float, seed: int) -> np.ndarray:
    """True for the test rows of Microsoft recommenders' stratified split: each user's ratings are shuffled
    (seeded) and the last round(test_share * n) of them held out, so every user keeps ratings in both parts."""
    key = np.random.default_rng(seed).random(len(ratings))
    order = np.lexsort((key, ratings["user_id"].to_numpy()))
    users = pd.Series(ratings["user_id"].to_numpy()[order])
    counts = users.map(users.value_counts()).to_numpy()
    position = users.groupby(users).cumcount().to_numpy()
    mask = np.empty(len(ratings), dtype=bool)
    mask[order] = position >= np.round(counts * (1 - test_share))
    return mask


def data_profile(ratings: pd.DataFrame, min_user_ratings: int, min_item_ratings: int) -> dict:
    """Size, sparsity, activity and popularity skew, and the rating distribution."""
    per_user = ratings["user_id"].value_counts()
    per_item = ratings["item_id"].value_counts()
    n_users, n_items, n = len(per_user), len(per_item), len(ratings)
    popular = np.sort(per_item.to_numpy())[::-1]
    top_decile = popular[: max(1, n_items // 10)].sum() / n
    return {
        "ratings": n,
        "users": n_users,
        "items": n_items,
        "density": n / (n_users * n_items),
        "sparsity": 1 - n / (n_users * n_items),
        "ratings_per_user": {
            "min": int(per_user.min()),
            "median": float(per_user.median()),
            "max": int(per_user.max()),
        },
        "ratings_per_item": {
            "min": int(per_item.min()),
            "median": float(per_item.median()),
            "max": int(per_item.max()),
        },
        "top_10pct_items_share": float(top_decile),
        "item_popularity_gini": gini(popular),
        f"users_below_{min_user_ratings}_ratings": int((per_user < min_user_ratings).sum()),
        f"items_below_{min_item_ratings}_ratings": int((per_item < min_item_ratings).sum()),
        f"items_below_{min_item_ratings}_ratings_share": float((per_item < min_item_ratings).mean()),
        "rating_counts": {str(k): int(v) for k, v in ratings["rating"].value_counts().sort_index().items()},
        "mean_rating": float(ratings["rating"].mean()),
    }


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of a popularity distribution: 0 every item equally rated, near 1 a few items take all."""
    x = np.sort(np.asarray(counts, dtype=float))
    if len(x) == 0 or x.sum() == 0:
        return 0.0
    ranks = np.arange(1, len(x) + 1)
    return float((2 * ranks - len(x) - 1) @ x / (len(x) * x.sum()))
