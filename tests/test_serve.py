"""`aiflow serve-model` as a real uvicorn process on 127.0.0.1, for fraud and sentiment (the session's trained
copies): what it answers equals what batch scoring computes for the same items, a corpus of bad requests each
answered 4xx with the field and the reason (the server keeps serving), a bounded load with no answer but 200,
and a champion swap (a promotion, then a rollback) under load with zero failed requests."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from benchmarks.serve import fraud_bodies, load, sentiment_bodies, start_server
from tests.conftest import ROOT, _free_port, fraud_batches, promoted_copy, run, small_fraud_params, stop
from tests.sentiment.conftest import small_sentiment_params

pytestmark = pytest.mark.slow
MAX_BODY = 256 * 1024  # the servers' --max-body-mb in bytes, small so an oversize body is cheap to send


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """Fraud's session training (shared with the scoring tests), its champion promoted."""
    if os.environ.get("AIFLOW_SERVE_TEST_REPO"):  # a repo with both champions already: iterate without a rebuild
        return Path(os.environ["AIFLOW_SERVE_TEST_REPO"])
    return promoted_copy(tmp_path_factory, "fraud", small_fraud_params())


@pytest.fixture(scope="module")
def sentiment_repo(tmp_path_factory, repo) -> Path:
    """Sentiment's session training with the ensemble as candidate (as its scoring tests), promoted."""
    if os.environ.get("AIFLOW_SERVE_TEST_REPO"):
        return repo
    # nbsvm's joblib and fasttext's torch weights; the small fasttext alone is below the promotion threshold
    return promoted_copy(tmp_path_factory, "sentiment", small_sentiment_params(), evaluate={"candidate": "ensemble"})


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> dict[str, Path]:
    return fraud_batches(tmp_path_factory.mktemp("batches"))


def _server(repo: Path, domain: str, *args: str) -> Iterator[str]:
    port = _free_port()
    with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as log:
        proc = start_server(
            repo,
            domain,
            port,
            "--max-body-mb",
            str(MAX_BODY / 1024 / 1024),
            "--window-ms",
            "5",
            *args,
            code_root=ROOT,
            log=Path(log.name),
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def fraud(repo, batches) -> Iterator[str]:
    yield from _server(repo, "fraud", "--history", str(batches["history"]))


@pytest.fixture(scope="module")
def sentiment(sentiment_repo) -> Iterator[str]:
    yield from _server(sentiment_repo, "sentiment")


def _transactions(csv: Path, n: int) -> list[dict[str, Any]]:
    table = pd.read_csv(csv).head(n)
    return [
        {
            "transaction_id": int(r.TRANSACTION_ID),
            "tx_datetime": str(r.TX_DATETIME),
            "customer_id": int(r.CUSTOMER_ID),
            "terminal_id": int(r.TERMINAL_ID),
            "tx_amount": float(r.TX_AMOUNT),
        }
        for r in table.itertuples()
    ]


def _batch_scored(repo: Path, domain: str, table: pd.DataFrame, **options: Any) -> pd.DataFrame:
    """What `aiflow score` computes for `table` (read format), through the same loaded champion and gate."""
    from domains.common.contract import ScoreOptions
    from domains.common.serving import load

    served = load(repo, domain)
    try:
        kept = served.suite.schema.validate(table)
        return served.scoring.score(
            served.params, served.model_dir, served.ref.model, kept, ScoreOptions(**options)
        ).predictions.reset_index(drop=True)
    finally:
        import shutil

        shutil.rmtree(served.model_dir)


def test_fraud_answers_what_batch_scoring_computes(repo, batches, fraud, tmp_path):
    items = _transactions(batches["new"], 120)
    response = httpx.post(f"{fraud}/predict", json={"items": items}, timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    registry = json.loads((repo / "registry" / "fraud.json").read_text())["champion"]
    assert answer["model"] == {
        "version": "v1",
        "name": registry["model"],
        "dvc_md5": registry["train_md5"],
        "runtime": "torch",
    }
    got = pd.DataFrame(answer["predictions"])
    from domains.fraud.loaders import read_handbook

    pd.read_csv(batches["new"]).head(120).to_csv(tmp_path / "new.csv", index=False)
    expected = _batch_scored(
        repo, "fraud", read_handbook(tmp_path / "new.csv", labels=False), history=batches["history"]
    )
    assert got["transaction_id"].tolist() == expected["transaction_id"].tolist()
    assert np.abs(got["fraud_probability"] - expected["fraud_probability"]).max() < 1e-9
    assert (got["decision"] == expected["decision"]).all() and (got["short_history"] == expected["short_history"]).all()

    # One transaction a request, sent together: scored in shared batches, each as if alone.
    async def singles() -> list[dict]:
        async with httpx.AsyncClient(timeout=60) as client:
            answers = await asyncio.gather(
                *(client.post(f"{fraud}/predict", json={"items": [item]}) for item in items[:24])
            )
        return [a.json()["predictions"][0] for a in answers]

    together = pd.DataFrame(asyncio.run(singles()))
    alone = pd.DataFrame(
        [
            httpx.post(f"{fraud}/predict", json={"items": [item]}, timeout=60).json()["predictions"][0]
            for item in items[:6]
        ]
    )
    assert np.abs(together["fraud_probability"][:6] - alone["fraud_probability"]).max() < 1e-6  # float32 MLP
    assert (together["short_history"][:6] == alone["short_history"]).all()

    health = httpx.get(f"{fraud}/health").json()
    assert health["status"] == "ok" and health["version"] == "v1" and health["batches"] < health["requests"]
    metadata = httpx.get(f"{fraud}/metadata").json()
    assert metadata["dvc_md5"] == registry["train_md5"] and metadata["metrics"] == registry["metrics"]
    assert metadata["threshold"] == 0.5 and metadata["runtime"] == "torch"
    schema = httpx.get(f"{fraud}/openapi.json").json()
    assert "FraudRequest" in schema["components"]["schemas"]
    for page, script in (("docs", "swagger-ui-bundle.js"), ("redoc", "redoc.standalone.js")):  # no CDN: offline too
        html = httpx.get(f"{fraud}/{page}").text
        assert f"/static-offline-docs/{script}" in html and "cdn" not in html.lower(), html[:500]
        assert httpx.get(f"{fraud}/static-offline-docs/{script}").status_code == 200


def test_sentiment_answers_what_batch_scoring_computes(sentiment_repo, sentiment):
    from domains.sentiment.checks import with_scoring_columns
    from domains.sentiment.loaders import _document, _frame

    texts = [body["items"][0]["text"] for body in sentiment_bodies(30, seed=11)]
    response = httpx.post(f"{sentiment}/predict", json={"items": [{"text": t} for t in texts]}, timeout=60)
    assert response.status_code == 200, response.text
    got = pd.DataFrame(response.json()["predictions"])
    table = with_scoring_columns(
        _frame([_document(f"item {n}", None, None, t.encode()) for n, t in enumerate(texts)]), ["neg", "pos"]
    )
    expected = _batch_scored(sentiment_repo, "sentiment", table)
    assert got["item_id"].tolist() == [f"item {n}" for n in range(len(texts))]
    assert np.abs(got["positive_probability"] - expected["positive_probability"]).max() < 1e-9
    assert (got["label"] == expected["label"]).all()
    assert httpx.get(f"{sentiment}/metadata").json()["classes"] == ["neg", "pos"]


GOOD_TX = {
    "transaction_id": 1,
    "tx_datetime": "2018-05-20T10:00:00",
    "customer_id": 3,
    "terminal_id": 7,
    "tx_amount": 25.0,
}
TX = json.dumps({"items": [GOOD_TX]})

FRAUD_BAD = {  # name: (raw body, expected status, a part of the reason, the field it names)
    "missing field": (
        json.dumps({"items": [{k: v for k, v in GOOD_TX.items() if k != "tx_amount"}]}),
        422,
        "Field required",
        "tx_amount",
    ),
    "extra field": (json.dumps({"items": [{**GOOD_TX, "merchant": "x"}]}), 422, "Extra inputs", "merchant"),
    "wrong type": (json.dumps({"items": [{**GOOD_TX, "tx_amount": "12 EUR"}]}), 422, "valid number", "tx_amount"),
    "float id": (json.dumps({"items": [{**GOOD_TX, "customer_id": 3.5}]}), 422, "valid integer", "customer_id"),
    "NaN": (TX.replace("25.0", "NaN"), 422, "finite number", "tx_amount"),
    "infinity": (TX.replace("25.0", "Infinity"), 422, "finite number", "tx_amount"),
    "bad time": (TX.replace("2018-05-20T10:00:00", "yesterday"), 422, "datetime", "tx_datetime"),
    "zero amount": (TX.replace("25.0", "0"), 422, "tx_amount:nonzero", "tx_amount"),
    "negative amount": (TX.replace("25.0", "-5"), 422, "tx_amount:non_negative", "tx_amount"),
    "implausible amount": (TX.replace("25.0", "1e9"), 422, "tx_amount:plausible", "tx_amount"),
    "out of time range": (TX.replace("2018-05-20", "1990-01-01"), 422, "tx_datetime:in_time_range", "tx_datetime"),
    "duplicate ids": (json.dumps({"items": [GOOD_TX, GOOD_TX]}), 422, "transaction_id:unique", "transaction_id"),
    "history label": (
        json.dumps({"items": [GOOD_TX], "history": [{**GOOD_TX, "tx_fraud": 2}]}),
        422,
        "0 or 1",
        "tx_fraud",
    ),
    "no items": (json.dumps({"items": []}), 422, "at least 1 item", "items"),
    "not an object": ("[1, 2]", 422, "should be an object", None),
    "empty body": ("", 422, "empty body", None),
    "not JSON": ("{items: [", 422, "Invalid JSON", None),
    "not UTF-8": (b'{"items": [{"tx_amount": "\xff"}]}', 422, "Invalid JSON", None),
    "batch over the limit": (
        json.dumps({"items": [{**GOOD_TX, "transaction_id": i} for i in range(1001)]}),
        422,
        "at most 1000 items",
        "items",
    ),
    "oversize body": (json.dumps({"items": [GOOD_TX], "history": [GOOD_TX] * 5000}), 413, "over the limit", None),
}


@pytest.mark.parametrize("case", sorted(FRAUD_BAD))
def test_fraud_bad_request_gets_4xx_with_the_reason(fraud, case):
    body, status, reason, field = FRAUD_BAD[case]
    response = httpx.post(f"{fraud}/predict", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == status, (case, response.status_code, response.text)
    detail = response.json()["detail"]
    assert any(reason in d["msg"] for d in detail), (case, detail)
    if field is not None:
        assert any(field in map(str, d["loc"]) for d in detail), (case, detail)
    assert httpx.post(f"{fraud}/predict", content=TX, timeout=60).status_code == 200  # still serving


SENTIMENT_BAD = {
    "missing text": ({"items": [{"id": "a"}]}, 422, "Field required", "text"),
    "extra field": ({"items": [{"text": "fine", "stars": 3}]}, 422, "Extra inputs", "stars"),
    "wrong type": ({"items": [{"text": 42}]}, 422, "valid string", "text"),
    "blank text": ({"items": [{"text": "   "}]}, 422, "text:not_blank", "text"),
    "duplicate ids": (
        {"items": [{"text": "a", "id": "x"}, {"text": "b", "id": "x"}]},
        422,
        "item_id:unique",
        "item_id",
    ),
    "text too long": ({"items": [{"text": "word " * 50_000}]}, 422, "at most 200000 characters", "text"),
    "batch over the limit": ({"items": [{"text": "ok"}] * 1001}, 422, "at most 1000 items", "items"),
}
SENTIMENT_RAW = {
    "unpaired surrogate": (b'{"items": [{"text": "bad \\udcff bytes"}]}', 422, "Invalid JSON"),
    "not UTF-8": (b'{"items": [{"text": "caf\xe9"}]}', 422, "Invalid JSON"),
    "oversize body": (json.dumps({"items": [{"text": "word " * 30_000}] * 2}).encode(), 413, "over the limit"),
}


@pytest.mark.parametrize("case", sorted(SENTIMENT_BAD) + sorted(SENTIMENT_RAW))
def test_sentiment_bad_request_gets_4xx_with_the_reason(sentiment, case):
    if case in SENTIMENT_BAD:
        body, status, reason, field = SENTIMENT_BAD[case]
        response = httpx.post(f"{sentiment}/predict", json=body, timeout=60)
    else:
        raw, status, reason = SENTIMENT_RAW[case]
        field = None
        response = httpx.post(f"{sentiment}/predict", content=raw, timeout=60)
    assert response.status_code == status, (case, response.status_code, response.text)
    detail = response.json()["detail"]
    assert any(reason in d["msg"] for d in detail), (case, detail)
    if field is not None:
        assert any(field in map(str, d["loc"]) for d in detail), (case, detail)
    assert httpx.post(f"{sentiment}/predict", json={"items": [{"text": "a fine film"}]}, timeout=60).status_code == 200


def test_a_bounded_load_gets_only_200(fraud, sentiment):
    for url, bodies in ((fraud, fraud_bodies(100)), (sentiment, sentiment_bodies(100))):
        result = asyncio.run(load(f"{url}/predict", bodies, clients=8, seconds=4))
        assert result["errors"] == 0 and result["requests"] > 8, result


def test_a_new_champion_is_served_without_a_restart_or_a_failed_request(repo, fraud):
    """A promotion (another of the trained models becomes v2) and then `aiflow champion rollback`, each under
    load: every request answered 200, the new champion's version in the answers and /health."""
    from domains.common.champion import _write, read_registry

    async def under_load(change) -> tuple[dict, set[str]]:
        versions: set[str] = set()
        bodies = fraud_bodies(50)

        async def watch() -> None:  # which model answers, while the load runs
            async with httpx.AsyncClient(timeout=30) as client:
                while not running.done():
                    answer = await client.post(f"{fraud}/predict", json=bodies[0])
                    assert answer.status_code == 200, answer.text
                    versions.add(answer.json()["model"]["version"])
                    await asyncio.sleep(0.05)

        running = asyncio.create_task(load(f"{fraud}/predict", bodies, clients=6, seconds=10))
        watching = asyncio.create_task(watch())
        await asyncio.sleep(2)
        change()
        result = await running
        await watching
        return result, versions

    def promote_hgb() -> None:  # what `aiflow champion promote` writes, for another model of the same training
        registry = read_registry(repo, "fraud")
        champion = {**registry["champion"], "version": 2, "model": "hgb", "reason": "test: swap under load"}
        registry["champion"] = champion
        registry["events"].append({"event": "promote", **champion})
        _write(repo, "fraud", registry)

    result, versions = asyncio.run(under_load(promote_hgb))
    assert result["errors"] == 0 and {"v1", "v2"} <= versions, (result, versions)
    health = httpx.get(f"{fraud}/health").json()
    assert health["version"] == "v2" and health["reloads"] == 1 and health["reload_error"] is None

    result, versions = asyncio.run(under_load(lambda: run(["aiflow", "champion", "rollback", "fraud"], repo)))
    assert result["errors"] == 0 and {"v1", "v2"} <= versions, (result, versions)
    assert httpx.get(f"{fraud}/health").json()["version"] == "v1"

    # A champion whose files are nowhere (not in the cache, not on the remote): v1 keeps serving, /health says why.
    registry = read_registry(repo, "fraud")
    ghost = {**registry["champion"], "version": 3, "train_md5": "0" * 32 + ".dir", "reason": "test: missing files"}
    registry["champion"] = ghost
    registry["events"].append({"event": "promote", **ghost})
    _write(repo, "fraud", registry)
    try:
        for _ in range(120):
            health = httpx.get(f"{fraud}/health").json()
            if health["reload_error"]:
                break
            time.sleep(0.5)
        assert health["version"] == "v1" and "neither in the DVC cache nor on the remote" in health["reload_error"]
        assert httpx.post(f"{fraud}/predict", content=TX, timeout=60).status_code == 200
    finally:
        run(["aiflow", "champion", "rollback", "fraud"], repo)


def test_a_runtime_without_an_onnx_path_is_refused_in_one_line(repo, monkeypatch, capsys):
    """Every domain serves ONNX now (recsys and defects: tests/test_serve_onnx_rd.py): fraud's is taken away here."""
    from dataclasses import replace

    from aiflow.cli import main
    from domains.common import serving

    spec = serving.load_spec("fraud")
    scoring = spec.scoring
    assert scoring is not None and scoring.serving is not None
    bare = replace(spec, scoring=replace(scoring, serving=replace(scoring.serving, onnx=None)))
    monkeypatch.setattr(serving, "load_spec", lambda domain: bare)
    monkeypatch.setenv("AIFLOW_ROOT", str(repo))
    assert main(["serve-model", "fraud", "--runtime", "onnx"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: fraud: --runtime onnx:") and "--runtime torch" in err and len(err.splitlines()) == 1
