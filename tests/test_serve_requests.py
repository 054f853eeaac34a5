"""The endpoint's request side for the domains tests/test_serve.py does not start a server for (recsys, medical,
defects): request models refuse what they should, and a request becomes the table the domain's reader makes of a
file (images written to a folder and read by `read_batch`; recsys ids as text, as its CSV reader leaves them)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from domains.common import image_serving
from domains.common.items import ID
from domains.common.serving import RequestError
from domains.medical.params import MedicalParams
from domains.recsys import serve as recsys_serve
from tests.medical.conftest import small_medical_params


def _png(size: int = 16, seed: int = 0) -> str:
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((size, size)) * 255).astype(np.uint8)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_images_are_read_by_the_domains_reader_in_request_order(tmp_path: Path):
    from domains.medical.serve import request_model, to_table

    p = MedicalParams.model_validate(small_medical_params())
    body = request_model(p).model_validate_json(
        json.dumps(
            {
                "items": [
                    {"image": _png(), "id": "b.png"},
                    {"image": _png(20)},
                    {"image": base64.b64encode(b"not an image").decode()},
                ]
            }
        )
    )
    table = to_table(p, body, tmp_path / "0")
    assert table[ID].tolist() == ["0|b.png", "0|item 1", "0|item 2"]  # unique among requests scored together
    assert table["height"].tolist()[:2] == [16, 20] and table["decode_error"].iloc[2] != ""


def test_an_image_that_is_not_base64_names_its_item(tmp_path: Path):
    body = image_serving.request_model("R").model_validate({"items": [{"image": _png()}, {"image": "!!"}]})
    with pytest.raises(RequestError) as refused:
        image_serving.to_table(lambda folder: None, body, tmp_path / "0")
    assert refused.value.errors[0]["loc"] == ["body", "items", 1, "image"]


@pytest.mark.parametrize(
    "body, reason",
    [
        ('{"items": [{"user_id": 1}, {"user_id": 2, "item_id": 3}]}', "not a mix"),
        ('{"items": [{"user_id": "1"}]}', "valid integer"),
        ('{"items": [{"user_id": 1, "rating": 4}]}', "Extra inputs"),
        ('{"items": []}', "at least 1 item"),
    ],
)
def test_recsys_requests_are_users_or_pairs(body: str, reason: str):
    with pytest.raises(ValidationError, match=reason):
        recsys_serve.request_model(None).model_validate_json(body)


def test_recsys_request_is_the_users_or_pairs_csv_table():
    model = recsys_serve.request_model(None)
    users = recsys_serve.to_table(None, model.model_validate_json('{"items": [{"user_id": 7}]}'), Path("."))
    pairs = recsys_serve.to_table(
        None, model.model_validate_json('{"items": [{"user_id": 7, "item_id": 2}]}'), Path(".")
    )
    assert users.to_dict("list") == {"user_id": ["7"]} and pairs.to_dict("list") == {"user_id": ["7"], "item_id": ["2"]}


def test_recsys_refuses_unknown_users_by_name():
    import pandas as pd

    predictions = pd.DataFrame(
        {
            "user_id": [7, 7, 9, 9],
            "rank": [1, 2, 1, 2],
            "item_id": [1, 2, 1, 2],
            "score": [0.5, 0.4, 0.3, 0.2],
            "known_user": [True, True, False, False],
        },
        index=[0, 0, 1, 1],
    )
    with pytest.raises(RequestError) as refused:
        recsys_serve.respond(None, predictions, SimpleNamespace(), Path("."))
    assert (
        refused.value.errors
        == [{"loc": ["body", "items", 1, "user_id"], "type": "unknown_user", "msg": refused.value.errors[0]["msg"]}]
        and "user 9" in refused.value.errors[0]["msg"]
    )
    answer = recsys_serve.respond(None, predictions.iloc[:2], SimpleNamespace(), Path("."))
    assert answer == [
        {"user_id": 7, "items": [{"rank": 1, "item_id": 1, "score": 0.5}, {"rank": 2, "item_id": 2, "score": 0.4}]}
    ]


@pytest.mark.slow
def test_a_medical_request_gets_the_batch_answer_without_the_embedding_pass(tmp_path_factory):
    """The endpoint scores with ScoreOptions.drift False (no drift is judged per request): the same predictions
    as batch scoring, and no CNN embedding pass (its drift column is left empty)."""
    import shutil

    from domains.common.contract import ScoreOptions
    from domains.common.serving import load
    from domains.medical.serve import request_model, to_table
    from tests.conftest import promoted_copy

    root = promoted_copy(
        tmp_path_factory, "medical", small_medical_params(), evaluate={"thresholds_min": {"auroc": 0.0}}
    )
    served = load(root, "medical")
    try:
        body = request_model(served.params).model_validate(
            {"items": [{"image": _png(), "id": "a.png"}, {"image": _png(seed=1)}]}
        )
        table = served.suite.schema.validate(to_table(served.params, body, tmp_path_factory.mktemp("request") / "0"))
        score = lambda **options: served.scoring.score(  # noqa: E731
            served.params, served.model_dir, served.ref.model, table, ScoreOptions(**options)
        )
        full, lean = score(), score(drift=False)
        assert full.predictions.equals(lean.predictions)
        assert full.drift["embedding_distance"].notna().all() and lean.drift["embedding_distance"].isna().all()
        (outcome,) = served.score([body])
        assert outcome.errors is None and [row[ID] for row in outcome.rows] == ["a.png", "item 1"]
        got = np.array([row["probability"] for row in outcome.rows])
        assert np.abs(got - full.predictions["probability"].to_numpy()).max() < 1e-12  # JSON's 15 digits
    finally:
        shutil.rmtree(served.model_dir)
