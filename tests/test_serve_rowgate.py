"""The endpoint's fast gate (domains/common/rowgate.py) against pandera's own run of the same scoring suites:
it passes a table only when no block or quarantine check fails, and then hands back what pandera's validation
returns (the same coerced columns); every table with a refusing failure goes to pandera, which names it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from domains.common import rowgate
from domains.common.gate import GateSuite, resolve_severities, run_pandera
from domains.fraud.checks import scoring_suite as fraud_suite
from domains.fraud.params import FraudParams
from domains.sentiment import serve as sentiment_serve
from domains.sentiment.checks import scoring_suite as sentiment_suite
from domains.sentiment.params import SentimentParams
from tests.conftest import small_fraud_params
from tests.sentiment.conftest import small_sentiment_params


def _refused(table: pd.DataFrame, suite: GateSuite, severities: dict) -> bool:
    checks, _ = run_pandera(table, suite.schema, severities, suite.id_column)
    return any(not c.passed and c.severity in rowgate.REFUSING for c in checks)


def _agrees(table: pd.DataFrame, suite: GateSuite, severities: dict) -> pd.DataFrame | None:
    gate = rowgate.compile(suite.schema, severities)
    assert gate is not None
    passed = gate.passes(table)
    if _refused(table, suite, severities):
        assert passed is None
    if passed is not None:
        try:
            expected = suite.schema.validate(table, lazy=True)
        except pa.errors.SchemaErrors:  # only warn or info checks failed: pandera's coercion, without raising
            expected = suite.schema.coerce_dtype(table)
        pd.testing.assert_frame_equal(passed, expected)
    return passed


GOOD_TX = pd.DataFrame(
    {
        "transaction_id": [1, 2, 3],
        "tx_datetime": pd.to_datetime(["2018-05-20 10:00", "2018-05-20 11:00", "2018-05-21 09:30"]),
        "customer_id": [3, 3, 4],
        "terminal_id": [7, 8, 7],
        "tx_amount": [25.0, 12.5, 80.0],
    }
)
BAD_TX = {  # name: a change to the good table
    "zero amount": lambda t: t.assign(tx_amount=[25.0, 0.0, 80.0]),
    "negative amount": lambda t: t.assign(tx_amount=[25.0, -1.0, 80.0]),
    "implausible amount": lambda t: t.assign(tx_amount=[1e12, 12.5, 80.0]),
    "NaN amount": lambda t: t.assign(tx_amount=[25.0, np.nan, 80.0]),
    "infinite amount": lambda t: t.assign(tx_amount=[25.0, np.inf, 80.0]),
    "text amount": lambda t: t.assign(tx_amount=["25.0", "12 EUR", "80"]),
    "out of time range": lambda t: t.assign(tx_datetime=pd.to_datetime(["1990-01-01", "2018-05-20", "2018-05-21"])),
    "no time": lambda t: t.assign(tx_datetime=pd.to_datetime(["2018-05-20", None, "2018-05-21"])),
    "duplicate id": lambda t: t.assign(transaction_id=[1, 1, 3]),
    "negative card": lambda t: t.assign(customer_id=[3, -3, 4]),
    "float card": lambda t: t.assign(customer_id=[3.0, 3.5, 4.0]),  # pandera casts it (the request model refuses it)
    "missing amount": lambda t: t.drop(columns=["tx_amount"]),
    "NaN in a V column": lambda t: t.assign(v1=[0.1, np.nan, 0.3]),
    "unknown scenario": lambda t: t.assign(tx_fraud_scenario=[0, 7, 1]),
}


@pytest.mark.parametrize("case", ["good", "good with V columns", "text ids that fit", *sorted(BAD_TX)])
def test_the_fast_gate_agrees_with_pandera_on_fraud_rows(case: str):
    p = FraudParams.model_validate(small_fraud_params())
    suite = fraud_suite(p)
    severities = resolve_severities(suite, p.gate)
    table = {
        "good": GOOD_TX,
        "good with V columns": GOOD_TX.assign(v1=[0.1, 0.2, 0.3], v28=[1.0, -1.0, 0.0]),
        "text ids that fit": GOOD_TX.assign(customer_id=["3", "3", "4"]),  # coerced, as pandera does
    }.get(case)
    if table is None:
        table = BAD_TX[case](GOOD_TX)
    passed = _agrees(table, suite, severities)
    assert (passed is not None) == (case.startswith(("good", "text ids")) or case == "float card"), case


@pytest.mark.parametrize(
    "texts, ids, passes",
    [
        (["a fine film", "dull"], [None, None], True),
        (["a fine film", "a fine film"], [None, None], True),  # duplicate_items: info, never refuses
        (["a fine film", "   "], [None, None], False),  # text:not_blank (quarantine)
        (["a", "b"], ["x", "x"], False),  # item_id:unique
        (["<br /> markup left " * 3, "x " * 5_000], [None, None], True),  # info checks only
    ],
)
def test_the_fast_gate_agrees_with_pandera_on_sentiment_rows(texts: list[str], ids: list, passes: bool):
    p = SentimentParams.model_validate(small_sentiment_params())
    suite = sentiment_suite(p)
    severities = resolve_severities(suite, p.gate)
    body = sentiment_serve.request_model(p).model_validate_json(
        json.dumps({"items": [{"text": t, **({"id": i} if i else {})} for t, i in zip(texts, ids)]})
    )
    table = sentiment_serve.to_table(p, body, Path("unused"))
    assert (_agrees(table, suite, severities) is not None) == passes


def test_a_schema_feature_the_fast_gate_does_not_model_leaves_it_to_pandera():
    schema = pa.DataFrameSchema({"a": pa.Column("int64", pa.Check.ge(0, groupby="b")), "b": pa.Column("str")})
    assert rowgate.compile(schema, {}) is None
    assert rowgate.compile(pa.DataFrameSchema({"a": pa.Column("int64")}, index=pa.Index("int64")), {}) is None
