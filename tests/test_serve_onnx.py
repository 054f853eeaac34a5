"""`aiflow serve-model fraud|sentiment --runtime onnx|int8` as real uvicorn processes on 127.0.0.1, next to a
`--runtime torch` server of the same champion (the session's trained builds, as tests/test_serve.py): the same
requests get the same decisions and probabilities within 1e-5 (the export's parity bound), alone and batched
together; a gate refusal is still a 422 naming the item and the check; an int8 server starts, says which graph
serves and answers probabilities. Sentiment's champion is the ensemble (nbsvm and fastText, each from its graph)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from benchmarks.serve import fraud_bodies, sentiment_bodies
from tests.conftest import fraud_batches, promoted_copy, small_fraud_params
from tests.sentiment.conftest import small_sentiment_params
from tests.test_serve import _server, _transactions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fraud_repo(tmp_path_factory) -> Path:
    return promoted_copy(tmp_path_factory, "fraud", small_fraud_params())  # the MLP is the champion


@pytest.fixture(scope="module")
def sentiment_repo(tmp_path_factory) -> Path:
    # the ensemble (nbsvm, fasttext) as candidate, as the serving and scoring tests
    return promoted_copy(tmp_path_factory, "sentiment", small_sentiment_params(), evaluate={"candidate": "ensemble"})


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> dict[str, Path]:
    return fraud_batches(tmp_path_factory.mktemp("batches"))


@pytest.fixture(scope="module")
def history(batches) -> Path:
    return batches["history"]


@pytest.fixture(scope="module")
def new_transactions(batches) -> Path:
    return batches["new"]


@pytest.fixture(scope="module")
def fraud_servers(fraud_repo, history) -> Iterator[dict[str, str]]:
    """The torch and the ONNX server of fraud's champion, both with the same --history."""
    for torch_url in _server(fraud_repo, "fraud", "--history", str(history)):
        for onnx_url in _server(fraud_repo, "fraud", "--runtime", "onnx", "--history", str(history)):
            yield {"torch": torch_url, "onnx": onnx_url}


@pytest.fixture(scope="module")
def sentiment_servers(sentiment_repo) -> Iterator[dict[str, str]]:
    for torch_url in _server(sentiment_repo, "sentiment"):
        for onnx_url in _server(sentiment_repo, "sentiment", "--runtime", "onnx"):
            yield {"torch": torch_url, "onnx": onnx_url}


def _predict(url: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, timeout=120)


def _answers(url: str, bodies: list[Any]) -> list[pd.DataFrame]:
    """Each body's predictions, the bodies sent at once (the server scores them together)."""
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda body: _predict(url, body), bodies))
    for response in responses:
        assert response.status_code == 200, response.text
    return [pd.DataFrame(r.json()["predictions"]) for r in responses]


def _assert_same(torch_rows: pd.DataFrame, onnx_rows: pd.DataFrame, key: str, decision: str, probability: str) -> None:
    assert onnx_rows[key].tolist() == torch_rows[key].tolist()
    assert (onnx_rows[decision] == torch_rows[decision]).all()
    difference = np.abs(onnx_rows[probability] - torch_rows[probability]).max()
    assert difference <= 1e-5, difference


def _not_the_trained_model(torch_rows: list[pd.DataFrame], onnx_rows: list[pd.DataFrame], probability: str) -> None:
    """Some probability differs in its last bits (float32 graphs, another kernel): onnxruntime answered."""
    both = zip(pd.concat(torch_rows)[probability], pd.concat(onnx_rows)[probability])
    assert any(a != b for a, b in both)


def _assert_refused(url: str, body: Any, check: str, loc: list[Any]) -> None:
    """422, an error naming the check at `loc` (the item and the field)."""
    response = _predict(url, body)
    assert response.status_code == 422, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert any(check in d["msg"] and d["loc"] == ["body", *loc] for d in detail), detail


def test_fraud_onnx_answers_as_the_torch_server(fraud_servers, new_transactions):
    """A 60-row request (windows over its own rows and the server's history) and 8 single-row requests sent at
    once (scored together, each card renumbered apart): the same decisions and probabilities."""
    urls = fraud_servers
    body = {"items": _transactions(new_transactions, 60)}
    singles = fraud_bodies(8, seed=5)
    expected = _answers(urls["torch"], [body, *singles])
    got = _answers(urls["onnx"], [body, *singles])
    for torch_rows, onnx_rows in zip(expected, got):
        _assert_same(torch_rows, onnx_rows, "transaction_id", "decision", "fraud_probability")
        assert (onnx_rows["short_history"] == torch_rows["short_history"]).all()
    _not_the_trained_model(expected, got, "fraud_probability")
    metadata = httpx.get(f"{urls['onnx']}/metadata", timeout=30).json()
    assert metadata["runtime"] == "onnx" and metadata["onnx_files"] == {"mlp": "mlp.onnx"}
    assert metadata["threshold"] == httpx.get(f"{urls['torch']}/metadata", timeout=30).json()["threshold"]


def test_fraud_gate_refusal_is_a_422_under_onnx(fraud_servers, new_transactions):
    good = _transactions(new_transactions, 2)
    _assert_refused(
        fraud_servers["onnx"],
        {"items": [good[0], {**good[1], "tx_amount": 0.0}]},
        "tx_amount:nonzero",
        ["items", 1, "tx_amount"],
    )
    assert _predict(fraud_servers["onnx"], {"items": good}).status_code == 200  # still serving


def test_sentiment_onnx_ensemble_answers_as_the_torch_server(sentiment_servers):
    """The ensemble's members each from their graph, averaged as trained: the same labels and probabilities,
    for a batch of reviews, a review with no n-gram of the vocabulary (an empty bag) and single reviews sent at
    once."""
    urls = sentiment_servers
    texts = [b["items"][0]["text"] for b in sentiment_bodies(30, seed=11)]
    body = {"items": [*({"text": t} for t in texts), {"text": "qwxz zzyq"}, {"text": "Good.", "id": "short"}]}
    singles = sentiment_bodies(20, seed=12)[:6]
    expected = _answers(urls["torch"], [body, *singles])
    got = _answers(urls["onnx"], [body, *singles])
    for torch_rows, onnx_rows in zip(expected, got):
        _assert_same(torch_rows, onnx_rows, "item_id", "label", "positive_probability")
    _not_the_trained_model(expected, got, "positive_probability")
    metadata = httpx.get(f"{urls['onnx']}/metadata", timeout=30).json()
    assert metadata["model"] == "ensemble" and metadata["runtime"] == "onnx"
    assert metadata["onnx_files"] == {"nbsvm": "nbsvm.onnx", "fasttext": "fasttext.onnx"}


def test_sentiment_gate_refusal_is_a_422_under_onnx(sentiment_servers):
    url = sentiment_servers["onnx"]
    _assert_refused(url, {"items": [{"text": "a fine film"}, {"text": "   "}]}, "text:not_blank", ["items", 1, "text"])
    _assert_refused(
        url, {"items": [{"text": "a", "id": "x"}, {"text": "b", "id": "x"}]}, "item_id:unique", ["items", 1, "item_id"]
    )
    assert _predict(url, {"items": [{"text": "a fine film"}]}).status_code == 200  # still serving


@pytest.mark.parametrize("domain", ["fraud", "sentiment"])
def test_an_int8_server_names_its_graphs_and_answers_probabilities(domain, request, new_transactions):
    """--runtime int8: the quantized graph where the export kept one (the torch models: dynamic int8 weights),
    else float32 (the linear ones have no int8 version); answers are probabilities."""
    repo = request.getfixturevalue(f"{domain}_repo")
    if domain == "fraud":
        body, column = {"items": _transactions(new_transactions, 20)}, "fraud_probability"
        files = {"mlp": "mlp.int8.onnx"}
    else:
        body, column = {"items": [b["items"][0] for b in sentiment_bodies(20, seed=13)]}, "positive_probability"
        files = {"nbsvm": "nbsvm.onnx", "fasttext": "fasttext.int8.onnx"}
    for url in _server(repo, domain, "--runtime", "int8"):
        metadata = httpx.get(f"{url}/metadata", timeout=30).json()
        assert metadata["runtime"] == "int8" and metadata["onnx_files"] == files
        response = _predict(url, body)
        assert response.status_code == 200, response.text
        assert response.json()["model"]["runtime"] == "int8"
        probability = pd.DataFrame(response.json()["predictions"])[column]
        assert len(probability) == len(body["items"]) and probability.between(0, 1).all()


def test_a_sentiment_ensemble_member_without_a_graph_stops_the_onnx_runtime_in_one_line(sentiment_repo, tmp_path):
    """TF-IDF + logistic regression is never exported (skl2onnx's sublinear TF is not scikit-learn's): an ensemble
    holding it is not served by ONNX in part, it is refused, with the reason and --runtime torch, in one line."""
    from domains.common.errors import PipelineError
    from domains.common.export import ExportRequest, export
    from domains.common.registry import load_params
    from domains.sentiment.serve import onnx

    out = tmp_path / "export"
    export(sentiment_repo, ExportRequest("sentiment", "champion", False, out))
    p = load_params(sentiment_repo, "sentiment")
    p = p.model_copy(update={"train": p.train.model_copy(update={"ensemble": ["fasttext", "tfidf_logreg"]})})
    with pytest.raises(PipelineError) as refused:
        onnx(p, sentiment_repo / "data" / "sentiment" / "train", out, "ensemble", False)
    message = str(refused.value)
    assert "tfidf_logreg was not exported" in message and "sublinear" in message and "--runtime torch" in message
    assert "\n" not in message
