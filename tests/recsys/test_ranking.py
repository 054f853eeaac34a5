"""Ranking models: EASE and item-kNN against their definitions on tiny matrices; BPR and the VAE learn a
planted structure that popularity cannot see; top-k for a block of users equals a per-user loop."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from domains.common.errors import PipelineError
from domains.recsys.baselines import make_surprise, popularity, to_trainset
from domains.recsys.metrics import ranking_metrics
from domains.recsys.mf import fit_mf, save_mf
from domains.recsys.params import RecsysTrainParams
from domains.recsys.ranking import BPR, EASE, ITEM_KNN, VAE, ItemItem, fit_ease, fit_item_knn, fit_ranking
from domains.recsys.recommend import recommend
from domains.recsys.split import per_user_random_split
from domains.recsys.train import MF, POPULARITY, model_file

X = sp.csr_matrix(
    np.array(
        [[1, 1, 0, 0, 1], [1, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 0, 1], [0, 0, 1, 1, 1], [1, 0, 0, 1, 0]],
        dtype=np.float32,
    )
)


def test_ease_is_the_constrained_ridge_regression():
    """Column j of B regresses item j on the other items with penalty lambda (B_jj = 0), solved here item by item."""
    lam, x = 2.0, X.toarray().astype(float)
    b = fit_ease(X, lam)
    n = x.shape[1]
    for j in range(n):
        others = [i for i in range(n) if i != j]
        a = x[:, others]
        expected = np.linalg.solve(a.T @ a + lam * np.eye(n - 1), a.T @ x[:, j])
        np.testing.assert_allclose(b[others, j], expected, rtol=1e-4, atol=1e-5)
        assert b[j, j] == 0


def test_item_knn_keeps_each_items_most_similar_neighbours():
    x = X.toarray().astype(float)
    cosine = (x.T @ x) / np.outer(np.linalg.norm(x, axis=0), np.linalg.norm(x, axis=0))
    np.fill_diagonal(cosine, 0)
    full = fit_item_knn(X, 10).toarray()
    np.testing.assert_allclose(full, cosine, rtol=1e-5)
    two = fit_item_knn(X, 2).toarray()
    for j in range(x.shape[1]):
        kept = np.flatnonzero(two[:, j])
        assert len(kept) == 2 and set(kept) <= set(np.argsort(-cosine[:, j])[:3])  # ties may pick either
        assert np.all(cosine[kept, j] >= np.sort(cosine[:, j])[-2] - 1e-6)


def planted(seed: int = 0, n_users: int = 240, n_items: int = 120, groups: int = 4) -> pd.DataFrame:
    """Users in groups; each interacts with ~20 items of its group's block (equally popular blocks), plus a few
    random ones: popularity is nearly flat, the structure is in who rates what."""
    rng = np.random.default_rng(seed)
    block = n_items // groups
    rows = []
    for u in range(n_users):
        g = u % groups
        own = rng.choice(np.arange(g * block, (g + 1) * block), size=20, replace=False)
        noise = rng.choice(n_items, size=3, replace=False)
        rows += [(u + 1, int(i) + 1) for i in np.unique(np.concatenate([own, noise]))]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    return frame.assign(rating=4.0, timestamp=np.arange(len(frame)))


def _train_dir(
    tmp_path: Path, frame: pd.DataFrame, names: list[str], t: RecsysTrainParams
) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    test = per_user_random_split(frame, 0.25, seed=1)
    train, held = frame[~test].reset_index(drop=True), frame[test]
    val = per_user_random_split(train, 0.25, seed=2)
    out = tmp_path / "train"
    out.mkdir()
    popularity(train).to_parquet(model_file(out, POPULARITY))
    for name in names:
        fit_ranking(name, train, val, float("-inf"), t, 0, tmp_path, "f").model.save(model_file(out, name))
    return out, train, held


def _ndcg(train_dir: Path, name: str, train: pd.DataFrame, held: pd.DataFrame) -> float:
    users = np.unique(held["user_id"])
    by_user = held.groupby("user_id")["item_id"].apply(set)
    recs, _ = recommend(train_dir, name, train, users, "cpu")
    return ranking_metrics(recs, [by_user[u] for u in users], train["item_id"].nunique())["ndcg_at_10"]


SMALL = RecsysTrainParams(
    device="cpu",
    num_threads=1,
    **{
        "bpr": {"factors": 16, "epochs": 30, "lr": 0.02, "reg": 0.001, "patience": 3, "batch_size": 512},
        "vae": {
            "hidden": 64,
            "latent": 16,
            "epochs": 60,
            "batch_size": 32,
            "lr": 0.003,
            "patience": 5,
            "anneal_epochs": 5,
        },
        "ease": {"lambdas": [10, 100]},
        "item_knn": {"neighbours": [10, 50]},
    },
)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    return _train_dir(tmp_path_factory.mktemp("planted"), planted(), [EASE, ITEM_KNN, BPR, VAE], SMALL)


@pytest.mark.parametrize("name", [BPR, VAE, EASE, ITEM_KNN])
def test_ranking_models_learn_a_planted_structure(fitted, name):
    train_dir, train, held = fitted
    baseline = _ndcg(train_dir, POPULARITY, train, held)
    assert _ndcg(train_dir, name, train, held) > baseline + 0.25, baseline


@pytest.mark.parametrize("name", [EASE, ITEM_KNN, BPR, VAE, POPULARITY])
def test_block_top_k_equals_the_per_user_loop(fitted, name):
    train_dir, train, _ = fitted
    users = np.unique(train["user_id"])[:40]
    block, block_scores = recommend(train_dir, name, train, users, "cpu")
    for row, user in enumerate(users):
        one, one_scores = recommend(train_dir, name, train, np.array([user]), "cpu")
        np.testing.assert_array_equal(one[0], block[row])
        np.testing.assert_allclose(one_scores[0], block_scores[row], rtol=1e-5)


def test_ease_top_k_by_hand(fitted):
    """Scores x_u . B, rated items masked, best first: computed user by user with plain numpy."""
    train_dir, train, _ = fitted
    model = ItemItem.load(model_file(train_dir, EASE))
    users = np.unique(train["user_id"])[:15]
    recs, _ = recommend(train_dir, EASE, train, users, "cpu")
    for row, user in enumerate(users):
        rated = train.loc[train["user_id"] == user, "item_id"].to_numpy()
        x = np.isin(model.item_ids, rated).astype(np.float32)
        scores = np.where(x > 0, -np.inf, x @ model.weights)
        np.testing.assert_array_equal(recs[row], model.item_ids[np.argsort(-scores, kind="stable")[:10]])


def test_unknown_users_get_the_popularity_ranking_in_any_order(fitted):
    train_dir, train, _ = fitted
    known = np.unique(train["user_id"])[:3]
    users = np.array([known[2], 10_000, known[0], known[2]])  # unsorted, a stranger, a repeat
    for name in (BPR, EASE):
        recs, _ = recommend(train_dir, name, train, users, "cpu")
        alone, _ = recommend(train_dir, name, train, known, "cpu")
        np.testing.assert_array_equal(recs[[0, 2, 3]], alone[[2, 0, 2]])
        counts = train["item_id"].value_counts()
        assert list(recs[1]) == list(counts.sort_index().sort_values(ascending=False, kind="stable").index[:10])


def test_top_k_larger_than_the_catalogue_is_a_one_line_error(fitted):
    train_dir, train, _ = fitted
    with pytest.raises(PipelineError, match=r"^top-k: k=500 is more than the 120 items of the catalogue$"):
        recommend(train_dir, EASE, train, np.unique(train["user_id"])[:2], "cpu", k=500)


def test_rating_models_recommend_through_the_same_interface(fitted, tmp_path):
    """Surprise and the torch MF, saved as train saves them: block equals per-user, strangers get popularity."""
    train_dir, train, _ = fitted
    rated = train.assign(rating=np.where(train["item_id"] % 2 == 0, 5.0, 3.0))
    joblib.dump(make_surprise("svd", 0).fit(to_trainset(rated, (1.0, 5.0))), model_file(train_dir, "svd"))
    user_ids, item_ids = np.unique(rated["user_id"]), np.unique(rated["item_id"])
    mf, _ = fit_mf(
        np.searchsorted(user_ids, rated["user_id"]),
        np.searchsorted(item_ids, rated["item_id"]),
        rated["rating"].to_numpy(float),
        len(user_ids),
        len(item_ids),
        RecsysTrainParams(epochs=2, passes=1, device="cpu", num_threads=1),
        (1.0, 5.0),
        0,
        tmp_path / "mf.ckpt",
        "f",
        "mf",
    )
    save_mf(mf, user_ids, item_ids, model_file(train_dir, MF))
    users = np.array([user_ids[5], 10_000, user_ids[0]])
    top_popular = list(
        train["item_id"].value_counts().sort_index().sort_values(ascending=False, kind="stable").index[:10]
    )
    for name in ("svd", MF):
        recs, _ = recommend(train_dir, name, train, users, "cpu")
        for row in (0, 2):
            np.testing.assert_array_equal(recs[row], recommend(train_dir, name, train, users[[row]], "cpu")[0][0])
        assert list(recs[1]) == top_popular
