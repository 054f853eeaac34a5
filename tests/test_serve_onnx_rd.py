"""`aiflow serve-model recsys|defects --runtime onnx`: the champion exported at start-up (parity proven on its test
split) and scored by onnxruntime after the same reader and gate, next to the torch server of
tests/test_serve_domains.py on the same session-built repository: the same top-k lists (recsys), the same decisions
with scores and anomaly-map PNGs within the export's tolerances (defects), and a bad request still a 422. In
process, every recsys model the export holds (graphs and Surprise factors) scores as the trained model does."""

from __future__ import annotations

import base64
import io
import shutil

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from domains.common.export import TOLERANCES
from tests import test_serve_domains as served_domains
from tests.defects.conftest import write_small_mvtec
from tests.test_serve import _server
from tests.test_serve_domains import RECSYS_BAD, _assert_refused, _predict

# The module fixtures of tests/test_serve_domains.py: the session's builds, promoted, and their torch servers.
recsys_repo, recsys = served_domains.recsys_repo, served_domains.recsys
defects_repo, defects = served_domains.defects_repo, served_domains.defects

pytestmark = pytest.mark.slow


def _known(repo, n: int, column: str = "user_id") -> np.ndarray:
    """The first `n` user (or item) ids of the training interactions."""
    ratings = pd.read_parquet(repo / "data/recsys/prepare/ratings.parquet")
    return np.sort(ratings.loc[~ratings["holdout"], column].unique())[:n]


def test_recsys_onnx_runtime_answers_as_the_trained_model(recsys_repo, recsys):
    """EASE (the champion) from ease.onnx fed each user's 0/1 history: the torch server's top-10 lists, exactly;
    pair scores within the export's relative tolerance; a bad request is still a 422 naming the reason."""
    users, items = _known(recsys_repo, 12), _known(recsys_repo, 3, "item_id")
    top_k = {"items": [{"user_id": int(u)} for u in users]}
    pairs = {"items": [{"user_id": int(u), "item_id": int(i)} for u in users[:4] for i in items]}
    served = _server(recsys_repo, "recsys", "--runtime", "onnx")
    url = next(served)
    try:
        metadata = httpx.get(f"{url}/metadata", timeout=30).json()
        assert metadata["runtime"] == "onnx" and metadata["onnx_files"] == {metadata["model"]: "ease.onnx"}
        onnx_top, onnx_pairs = _predict(url, top_k), _predict(url, pairs)
        assert onnx_top.status_code == onnx_pairs.status_code == 200, (onnx_top.text, onnx_pairs.text)
        _assert_refused(url, *RECSYS_BAD["unknown user"])
        _assert_refused(url, *RECSYS_BAD["wrong type"])
    finally:
        served.close()
    torch_top, torch_pairs = _predict(recsys, top_k).json(), _predict(recsys, pairs).json()
    lists = [[[e["item_id"] for e in row["items"]] for row in r["predictions"]] for r in (torch_top, onnx_top.json())]
    assert lists[0] == lists[1]  # every list, in order: no tie decided differently at this size
    scores = [[e["score"] for row in r["predictions"] for e in row["items"]] for r in (torch_top, onnx_top.json())]
    scale = max(1.0, max(abs(s) for s in scores[0]))
    assert np.abs(np.subtract(*scores)).max() <= TOLERANCES["torch"] * scale
    a, b = (pd.DataFrame(r["predictions"]) for r in (torch_pairs, onnx_pairs.json()))
    assert (a[["user_id", "item_id"]] == b[["user_id", "item_id"]]).all().all()
    assert np.abs(a["score"] - b["score"]).max() <= TOLERANCES["torch"] * scale


def test_recsys_every_exported_model_scores_as_the_trained_model(recsys_repo):
    """In process, the export `--runtime int8` makes at start-up (no int8 graph for a recommender: ease.onnx
    serves, /metadata says so); from it each model's scores: MF and BPR (user rows), item-kNN and the VAE
    (histories), SVD and BaselineOnly (numpy over the factors): the trained model's top-k lists, an unknown user's
    popularity ranking (counted), pair scores; SVD++, KNNBaseline and popularity stop in one line."""
    from domains.common.contract import ScoreOptions
    from domains.common.errors import PipelineError
    from domains.common.serving import load
    from domains.recsys.score import score_batch
    from domains.recsys.serve import onnx

    served = load(recsys_repo, "recsys", "int8")
    try:
        metadata = served.metadata()
        assert metadata["runtime"] == "int8" and metadata["onnx_files"] == {"ease": "ease.onnx"}
        p, model_dir, export_dir = served.params, served.model_dir, served.model_dir / ".onnx"
        users = pd.DataFrame({"user_id": np.append(_known(recsys_repo, 20), 987_654)})
        items = [*_known(recsys_repo, 2, "item_id"), 999_999]  # two known items, one unknown
        pairs = pd.DataFrame({"user_id": np.repeat(users["user_id"].to_numpy()[-6:], 3), "item_id": items * 6})
        for model in ("mf", "bpr", "item_knn", "vae", "svd", "baseline_only"):
            predict, calls = onnx(p, model_dir, export_dir, model, False), []
            options = ScoreOptions(predict=lambda name, users: calls.append(name) or predict(name, users), drift=False)
            for table in (users, pairs):
                trained = score_batch(p, model_dir, model, table, ScoreOptions(drift=False))
                exported = score_batch(p, model_dir, model, table, options)
                assert trained.notes == exported.notes, model  # the same unknown users and items counted
                t, e = trained.predictions, exported.predictions
                assert t.drop(columns="score").equals(e.drop(columns="score")), model  # lists, ranks, known flags
                scale = max(1.0, float(np.nanmax(np.abs(t["score"]))))
                assert np.allclose(t["score"], e["score"], rtol=0, atol=TOLERANCES["torch"] * scale, equal_nan=True)
            assert calls and set(calls) == {model}  # scored from the export, not the trained model
        assert not t["known_user"].iloc[-1]  # the unknown user's pairs
        for model in ("svdpp", "knn_baseline", "popularity"):
            with pytest.raises(PipelineError, match=f"{model} was not exported") as refused:
                onnx(p, model_dir, export_dir, model, False)
            assert "\n" not in str(refused.value)
    finally:
        shutil.rmtree(served.model_dir, ignore_errors=True)


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=np.int64)


def test_defects_onnx_runtime_answers_as_the_trained_model(defects_repo, defects, tmp_path):
    """DRAEM (the champion) from its graph (uint8 pixels -> map and score): the torch server's decisions at the same
    threshold, scores within the export's score tolerance, map PNGs within what its map tolerance allows."""
    category = write_small_mvtec(tmp_path / "parts", seed=13, category="part")
    files = sorted((category / "test").rglob("*.png"))[:8]
    body = {
        "items": [
            {"image": base64.b64encode(f.read_bytes()).decode(), "id": f"{f.parent.name}_{f.name}"} for f in files
        ]
    }
    served = _server(defects_repo, "defects", "--runtime", "onnx")
    url = next(served)
    try:
        metadata = httpx.get(f"{url}/metadata", timeout=30).json()
        assert metadata["runtime"] == "onnx" and metadata["onnx_files"] == {"draem": "draem.onnx"}
        onnx = _predict(url, body)
        assert onnx.status_code == 200, onnx.text
        _assert_refused(url, {"items": [{"image": base64.b64encode(b"GIF? no").decode()}]}, "decode_error", "image")
    finally:
        served.close()
    threshold = metadata["threshold"]
    assert httpx.get(f"{defects}/metadata", timeout=30).json()["threshold"] == threshold
    torch_rows = pd.DataFrame(_predict(defects, body).json()["predictions"]).set_index("item_id")
    onnx_rows = pd.DataFrame(onnx.json()["predictions"]).set_index("item_id").loc[torch_rows.index]
    diff = np.abs(torch_rows["anomaly_score"] - onnx_rows["anomaly_score"])
    assert diff.max() <= TOLERANCES["torch"], diff.max()
    # This tiny DRAEM scores every image within 4e-6 of its threshold: a decision may differ only where the two
    # scores lie on both sides of it (so within the score tolerance of it); none did in the runs made.
    assert (onnx_rows["decision"] == (onnx_rows["anomaly_score"] >= threshold)).all()  # the torch server's threshold
    across = (torch_rows["anomaly_score"] >= threshold) != (onnx_rows["anomaly_score"] >= threshold)
    assert ((torch_rows["decision"] == onnx_rows["decision"]) | across).all(), int(across.sum())
    # write_map: a map value moved by d moves a pixel by at most 255 d / |threshold|, plus one for rounding
    allowed = 255 * TOLERANCES["map"] / abs(threshold) + 1
    for a, b in zip(torch_rows["anomaly_map_png"], onnx_rows["anomaly_map_png"]):
        assert np.abs(_png(a) - _png(b)).max() <= allowed
