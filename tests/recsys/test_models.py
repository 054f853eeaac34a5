"""Models: vectorised top-k scoring equals Surprise's own estimates; the torch MF is seeded and
reaches the known noise floor on clean synthetic data."""

import numpy as np
import pandas as pd
import pytest
import torch

from domains.recsys.baselines import make_surprise, popularity, predict_surprise, score_items, to_trainset
from domains.recsys.mf import fit_mf, load_mf, predict_mf, save_mf
from domains.recsys.params import RecsysTrainParams, SyntheticParams
from domains.recsys.split import assign_folds
from domains.recsys.synthetic import generate_ratings

SCALE = (1.0, 5.0)


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return generate_ratings(SyntheticParams(n_users=60, n_items=80, n_ratings=2500), seed=3).ratings


@pytest.mark.parametrize("name", ["baseline_only", "svd", "svdpp", "knn_baseline"])
def test_vectorised_scores_equal_surprise_estimates(ratings, name):
    algo = make_surprise(name, seed=0).fit(to_trainset(ratings, SCALE))
    users, items = [3, 17, 42], sorted(ratings["item_id"].unique())[:50]
    scores = score_items(algo, users, items)
    expected = np.array([[algo.predict(u, i, clip=False).est for i in items] for u in users])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_surprise_predictions_are_clipped_to_the_scale(ratings):
    algo = make_surprise("svd", seed=0).fit(to_trainset(ratings, SCALE))
    pred = predict_surprise(algo, ratings.head(200))
    assert pred.min() >= 1 and pred.max() <= 5 and len(pred) == 200


def test_popularity_counts_training_ratings():
    frame = pd.DataFrame({"item_id": [5, 5, 7, 5, 9, 7]})
    assert popularity(frame).to_dict("list") == {"item_id": [5, 7, 9], "ratings": [3, 2, 1]}


def _mf(ratings: pd.DataFrame, tmp_path, seed: int = 0, **train):
    t = RecsysTrainParams(**{"epochs": 6, "num_threads": 1, "device": "cpu", **train})
    u, i = ratings["user_id"].to_numpy() - 1, ratings["item_id"].to_numpy() - 1
    return fit_mf(u, i, ratings["rating"].to_numpy(float), 60, 80, t, SCALE, seed, tmp_path / "mf.ckpt", "f", "test")


def test_mf_same_seed_same_weights_and_checkpoints_removed(ratings, tmp_path):
    a, passes = _mf(ratings, tmp_path)
    b, _ = _mf(ratings, tmp_path)
    assert torch.equal(a.users, b.users) and torch.equal(a.items, b.items)
    assert len(passes) == 2 and not list(tmp_path.glob("*.ckpt"))  # coarse pass, then the fine one


def test_mf_saves_and_loads_with_its_ids(ratings, tmp_path):
    model, _ = _mf(ratings, tmp_path, passes=1)
    save_mf(model, np.arange(1, 61), np.arange(1, 81), tmp_path / "mf.pt")
    loaded, users, items = load_mf(tmp_path / "mf.pt", "cpu")
    u, i = np.array([0, 5]), np.array([3, 9])
    np.testing.assert_allclose(predict_mf(loaded, u, i, SCALE), predict_mf(model, u, i, SCALE))
    assert users.get_loc(6) == 5 and loaded.score_items(torch.tensor([0, 5])).shape == (2, 80)


def test_mf_reaches_the_noise_floor_on_clean_data(tmp_path):
    """Dense ratings missing at random: the model's error on unseen ratings is within 8% of the best possible."""
    p = SyntheticParams(
        n_users=400, n_items=150, n_ratings=45_000, min_user_ratings=50, activity_sigma=0.3, selection_strength=0.0
    )
    data = generate_ratings(p, seed=3)
    r = data.ratings
    test = assign_folds(len(r), 5, seed=0) == 0
    u, i, y = r["user_id"].to_numpy() - 1, r["item_id"].to_numpy() - 1, r["rating"].to_numpy(float)
    t = RecsysTrainParams(epochs=40, batch_size=1024, lr=0.02, reg=0.02, factors=8, num_threads=1, device="cpu")
    model, _ = fit_mf(
        u[~test], i[~test], y[~test], p.n_users, p.n_items, t, SCALE, 0, tmp_path / "mf.ckpt", "f", "floor"
    )
    error = np.sqrt(np.mean((predict_mf(model, u[test], i[test], SCALE) - y[test]) ** 2))
    floor = np.sqrt(data.truth["rating_variance"].to_numpy()[test].mean())
    biases_only = make_surprise("baseline_only", 0).fit(to_trainset(r[~test], SCALE))
    baseline_error = np.sqrt(np.mean((predict_surprise(biases_only, r[test]) - y[test]) ** 2))
    assert error <= 1.08 * floor, (error, floor)
    assert baseline_error > 1.15 * floor  # the tastes matter: without them the floor is far
