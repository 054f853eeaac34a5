"""The protocols: seeded k folds over all ratings, the per-user time-ordered hold-out, the data profile."""

import numpy as np
import pandas as pd
import pytest

from domains.recsys.split import assign_folds, data_profile, gini, per_user_random_split, time_holdout


def test_folds_are_balanced_seeded_and_shuffled():
    folds = assign_folds(1003, 5, seed=1)
    assert sorted(np.bincount(folds)) == [200, 200, 201, 201, 201]
    np.testing.assert_array_equal(folds, assign_folds(1003, 5, seed=1))
    assert not np.array_equal(folds, assign_folds(1003, 5, seed=2))
    assert not np.array_equal(folds[:10], np.arange(10) % 5)  # not in file order


def test_holdout_is_each_users_last_ratings_in_time():
    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 1, 2, 2, 2, 3],
            "item_id": [5, 6, 7, 8, 9, 5, 6, 7, 5],
            "timestamp": [50, 10, 40, 20, 40, 1, 2, 3, 1],
        }
    )
    held = time_holdout(ratings, per_user=2, min_train=2)
    # user 1: last is item 5 (t=50), then items 7 and 9 tie at t=40: the higher item id is the later one.
    # user 2 would keep 1 < min_train ratings, user 3 has one rating: no hold-out for them.
    assert sorted(ratings.loc[held, "item_id"]) == [5, 9] and set(ratings.loc[held, "user_id"]) == {1}
    shuffled = ratings.sample(frac=1, random_state=0)
    assert set(shuffled.index[time_holdout(shuffled, 2, 2)]) == set(ratings.index[held])  # row order does not matter


def test_gini_and_profile():
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 12])) == pytest.approx(0.75)
    ratings = pd.DataFrame({"user_id": [1, 1, 1, 2], "item_id": [1, 2, 3, 1], "rating": [5.0, 3.0, 4.0, 4.0]})
    profile = data_profile(ratings, min_user_ratings=2, min_item_ratings=2)
    assert profile["density"] == pytest.approx(4 / 6) and profile["users_below_2_ratings"] == 1
    assert profile["items_below_2_ratings"] == 2 and profile["rating_counts"] == {"3.0": 1, "4.0": 2, "5.0": 1}


def test_per_user_random_split_holds_out_a_quarter_of_every_user():
    ratings = pd.DataFrame({"user_id": np.repeat([1, 2, 3], [4, 8, 20]), "item_id": np.arange(32)})
    test = per_user_random_split(ratings, 0.25, seed=5)
    assert ratings[test].groupby("user_id").size().to_dict() == {1: 1, 2: 2, 3: 5}
    np.testing.assert_array_equal(test, per_user_random_split(ratings, 0.25, seed=5))
    assert not np.array_equal(test, per_user_random_split(ratings, 0.25, seed=6))
    assert not np.array_equal(test[12:], np.arange(20) >= 15)  # random within the user, not the last rows
