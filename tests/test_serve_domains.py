"""`aiflow serve-model` as a real uvicorn process on 127.0.0.1 for recsys, medical and defects (tests/test_serve.py
covers fraud and sentiment): each answers what the domain's own scoring computes for the same items, refuses a
corpus of bad requests with 4xx naming the field and the check (and keeps serving), and holds a bounded load with
no answer but 200. The repositories are the session's trained builds, shared with each domain's scoring tests."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmarks.serve import load
from tests.conftest import promoted_copy, scored_batch
from tests.defects.conftest import small_defects_params, with_draem, write_small_mvtec
from tests.medical.conftest import small_medical_params, synthetic_arrays
from tests.recsys.conftest import small_recsys_params
from tests.test_serve import _server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recsys_repo(tmp_path_factory) -> Path:
    return promoted_copy(tmp_path_factory, "recsys", small_recsys_params())  # EASE is promoted at this size


@pytest.fixture(scope="module")
def medical_repo(tmp_path_factory) -> Path:
    # As the medical scoring tests: two epochs at 16 px, promotion forced by a zero floor.
    return promoted_copy(
        tmp_path_factory, "medical", small_medical_params(), evaluate={"thresholds_min": {"auroc": 0.0}}
    )


@pytest.fixture(scope="module")
def defects_repo(tmp_path_factory) -> Path:
    # The build the defects scoring tests use (parts, DRAEM at a tiny size, DRAEM the champion).
    section = with_draem(small_defects_params(), "part")
    return promoted_copy(tmp_path_factory, "defects", section, evaluate={"candidate": "draem", "baselines": []})


@pytest.fixture(scope="module")
def recsys(recsys_repo) -> Iterator[str]:
    yield from _server(recsys_repo, "recsys")


@pytest.fixture(scope="module")
def medical(medical_repo) -> Iterator[str]:
    yield from _server(medical_repo, "medical")


@pytest.fixture(scope="module")
def defects(defects_repo) -> Iterator[str]:
    yield from _server(defects_repo, "defects")


def _b64_png(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _predict(url: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, timeout=120)


def _assert_refused(url: str, body: object, reason: str, field: str) -> None:
    """422, one of the errors naming the reason and, in its location, the field."""
    response = _predict(url, body)
    assert response.status_code == 422, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert any(reason in d["msg"] for d in detail) and any(field in map(str, d["loc"]) for d in detail), detail


def _model_name(url: str) -> str:
    return httpx.get(f"{url}/metadata", timeout=30).json()["model"]


def test_recsys_answers_the_models_top_k(recsys_repo, recsys):
    from domains.recsys.recommend import recommend

    ratings = pd.read_parquet(recsys_repo / "data/recsys/prepare/ratings.parquet")
    train = ratings[~ratings["holdout"]]
    users = np.sort(train["user_id"].unique())[:4]
    response = _predict(recsys, {"items": [{"user_id": int(u)} for u in users]})
    assert response.status_code == 200, response.text
    answered = {row["user_id"]: [entry["item_id"] for entry in row["items"]] for row in response.json()["predictions"]}
    expected, _ = recommend(recsys_repo / "data/recsys/train", _model_name(recsys), train, users, "cpu")
    assert answered == {int(u): [int(i) for i in items] for u, items in zip(users, expected)}


def test_medical_answers_what_batch_scoring_computes(medical_repo, medical, tmp_path):
    images = synthetic_arrays(seed=7, size=16)["test_images"][:6]
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"scan_{i}.png")
    response = _predict(
        medical, {"items": [{"image": _b64_png(x), "id": f"scan_{i}.png"} for i, x in enumerate(images)]}
    )
    assert response.status_code == 200, response.text
    answered = pd.DataFrame(response.json()["predictions"])
    expected = scored_batch(medical_repo, "medical", folder, "image-folder", _model_name(medical)).predictions
    expected = expected.assign(item_id=[Path(i).name for i in expected["item_id"]]).set_index("item_id")
    answered = answered.set_index("item_id").loc[expected.index]
    assert (answered["class"] == expected["class"]).all()
    assert np.abs(answered["probability"].to_numpy() - expected["probability"].to_numpy()).max() <= 1e-6


def test_defects_answers_what_batch_scoring_computes(defects_repo, defects, tmp_path):
    category = write_small_mvtec(tmp_path / "parts", seed=9, category="part")
    files = sorted((category / "test").rglob("*.png"))[:5]
    folder = tmp_path / "batch"
    folder.mkdir()
    for file in files:
        (folder / f"{file.parent.name}_{file.name}").write_bytes(file.read_bytes())
    body = {
        "items": [{"image": base64.b64encode(f.read_bytes()).decode(), "id": f.name} for f in sorted(folder.iterdir())]
    }
    response = _predict(defects, body)
    assert response.status_code == 200, response.text
    answered = pd.DataFrame(response.json()["predictions"]).set_index("item_id")
    expected = scored_batch(defects_repo, "defects", folder, "mvtec", _model_name(defects)).predictions
    expected = expected.assign(item_id=[Path(i).name for i in expected["item_id"]]).set_index("item_id")
    answered = answered.loc[expected.index]
    assert (answered["decision"] == expected["decision"]).all()
    assert np.abs(answered["anomaly_score"].to_numpy() - expected["anomaly_score"].to_numpy()).max() <= 1e-6
    assert all(Image.open(io.BytesIO(base64.b64decode(m))).size == (48, 48) for m in answered["anomaly_map_png"])


GOOD_16 = _b64_png(np.full((16, 16), 120, np.uint8) + np.arange(16, dtype=np.uint8)[None, :])
IMAGE_BAD = {
    "missing image": ({"items": [{"id": "a"}]}, "Field required", "image"),
    "extra field": ({"items": [{"image": GOOD_16, "colour": "red"}]}, "Extra inputs", "colour"),
    "not base64": ({"items": [{"image": "%%%"}]}, "base64", "image"),
    "not an image": ({"items": [{"image": base64.b64encode(b"GIF? no").decode()}]}, "decode_error:decodes", "image"),
    "no items": ({"items": []}, "at least 1 item", "items"),
    "over the limit": ({"items": [{"image": GOOD_16}] * 257}, "at most 256 items", "items"),
}


@pytest.mark.parametrize("domain", ["medical", "defects"])
@pytest.mark.parametrize("case", sorted(IMAGE_BAD) + ["wrong size", "wrong mode"])
def test_image_bad_request_gets_422_with_the_reason(request, domain, case):
    url = request.getfixturevalue(domain)
    size = {"medical": 16, "defects": 48}[domain]
    good = {"items": [{"image": _b64_png(np.full((size, size), 120, np.uint8) + np.eye(size, dtype=np.uint8) * 60)}]}
    texture = (np.random.default_rng(1).random((size + 5, size, 3)) * 60 + 90).astype(np.uint8)
    if case == "wrong size":
        body, reason, field = {"items": [{"image": _b64_png(texture[:, :, 0])}]}, "size", "items"  # the batch
    elif case == "wrong mode":
        body, reason, field = {"items": [{"image": _b64_png(texture[:size])}]}, "channel", "items"
    else:
        body, reason, field = IMAGE_BAD[case]
    _assert_refused(url, body, reason, field)
    assert _predict(url, good).status_code == 200  # still serving


RECSYS_BAD = {
    "unknown user": ({"items": [{"user_id": 987_654}]}, "unknown to the model", "user_id"),
    "missing user": ({"items": [{"item_id": 3}]}, "Field required", "user_id"),
    "wrong type": ({"items": [{"user_id": "seven"}]}, "valid integer", "user_id"),
    "extra field": ({"items": [{"user_id": 1, "rating": 5}]}, "Extra inputs", "rating"),
    "mixed kinds": ({"items": [{"user_id": 1}, {"user_id": 2, "item_id": 3}]}, "not a mix", "body"),
    "over the limit": ({"items": [{"user_id": 1}] * 1001}, "at most 1000 items", "items"),
}


@pytest.mark.parametrize("case", sorted(RECSYS_BAD))
def test_recsys_bad_request_gets_422_with_the_reason(recsys_repo, recsys, case):
    _assert_refused(recsys, *RECSYS_BAD[case])
    known = int(pd.read_parquet(recsys_repo / "data/recsys/prepare/ratings.parquet")["user_id"].iloc[0])
    assert _predict(recsys, {"items": [{"user_id": known}]}).status_code == 200  # still serving


def test_a_bounded_load_gets_only_200(recsys_repo, recsys, medical, defects):
    users = pd.read_parquet(recsys_repo / "data/recsys/prepare/ratings.parquet")["user_id"].unique()[:50]
    rng = np.random.default_rng(0)
    images = {
        size: [
            {"items": [{"image": _b64_png((rng.random((size, size)) * 40 + 100).astype(np.uint8))}]} for _ in range(20)
        ]
        for size in (16, 48)
    }
    for url, bodies in (
        (recsys, [{"items": [{"user_id": int(u)}]} for u in users]),
        (medical, images[16]),
        (defects, images[48]),
    ):
        result = asyncio.run(load(f"{url}/predict", bodies, clients=8, seconds=3))
        assert result["errors"] == 0 and result["requests"] >= 8, (url, result)  # each client answered


def test_a_multipart_upload_is_answered_as_its_json_body(medical, recsys):
    images = synthetic_arrays(seed=8, size=16)["test_images"][:3]
    pngs = [base64.b64decode(_b64_png(x)) for x in images]
    as_json = _predict(medical, {"items": [{"image": _b64_png(x), "id": f"s{i}.png"} for i, x in enumerate(images)]})
    files = [("image", (f"s{i}.png", png, "image/png")) for i, png in enumerate(pngs)]
    uploaded = httpx.post(f"{medical}/predict", files=files, timeout=120)
    assert uploaded.status_code == as_json.status_code == 200, uploaded.text
    assert uploaded.json()["predictions"] == as_json.json()["predictions"]
    for url, files, reason in (
        (medical, [("picture", ("a.png", pngs[0], "image/png"))], "unexpected part(s) picture"),
        (medical, [("image", ("a.png", b"not a png", "image/png"))], "decod"),
        (recsys, [("image", ("a.png", pngs[0], "image/png"))], "image domains: send JSON"),
    ):
        response = httpx.post(f"{url}/predict", files=files, timeout=120)
        assert response.status_code == 422 and any(reason in d["msg"] for d in response.json()["detail"]), response.text


def test_medicals_onnx_runtime_answers_as_the_trained_model(medical_repo, medical):
    """`--runtime onnx`: the champion exported at start-up (parity proven on its test split) and scored by
    onnxruntime after the same reader and gate: the torch server's classes, probabilities within 1e-5."""
    images = synthetic_arrays(seed=11, size=16)["test_images"][:8]
    body = {"items": [{"image": _b64_png(x), "id": f"x{i}.png"} for i, x in enumerate(images)]}
    served = _server(medical_repo, "medical", "--runtime", "onnx")
    url = next(served)
    try:
        onnx = _predict(url, body)
        assert onnx.status_code == 200, onnx.text
        assert onnx.json()["model"]["runtime"] == "onnx"
        assert httpx.get(f"{url}/metadata", timeout=30).json()["onnx_files"]
    finally:
        served.close()
    torch_rows, onnx_rows = _predict(medical, body).json()["predictions"], onnx.json()["predictions"]
    assert [r["class"] for r in torch_rows] == [r["class"] for r in onnx_rows]
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(torch_rows, onnx_rows)) <= 1e-5
