"""Scoring in chunks without a model: the output file's bytes and the gate's results do not depend on the chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.common import chunks
from domains.common.chunks import GateTally, PredictionWriter, SeenIds
from domains.common.gate import CheckResult, GateResult
from tests.conftest import digest

ROWS = 2500


def output_rows(first: int, stop: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows as the runner writes them: scored ones, and every 97th quarantined (no score), plus the scored types."""
    index = pd.RangeIndex(first, stop)
    scored = pd.DataFrame(
        {
            "transaction_id": index.to_numpy(),
            "fraud_probability": (index.to_numpy() * 7919 % 1000 / 1000).astype(np.float32),
            "decision": (index.to_numpy() % 3 == 0).astype(np.int64),
            "short_history": index.to_numpy() < 100,
        },
        index=index,
    )
    held = index[index % 97 == 5]
    rows = pd.concat(
        [
            scored.drop(index=held),
            pd.DataFrame({"transaction_id": held, "quarantine_reason": "tx_amount:nonzero"}, held),
        ]
    ).sort_index()
    rows["quarantine_reason"] = rows["quarantine_reason"].astype("string")
    clean = scored.iloc[:0].assign(quarantine_reason=pd.Series(dtype="string"))
    return clean.assign(model_version="v1"), rows.assign(model_version="v1").reset_index(drop=True)


@pytest.mark.parametrize("csv", [False, True])
def test_the_file_does_not_depend_on_the_chunks(tmp_path, monkeypatch, csv):
    monkeypatch.setattr(chunks, "ROW_GROUP", 1000)  # several row groups, cut across chunks
    digests = set()
    for size in (ROWS, 97, 333, 1000, 1001):
        file = tmp_path / f"{size}.{'csv' if csv else 'parquet'}"
        writer = PredictionWriter(file, csv)
        for first in range(0, ROWS, size):
            clean, rows = output_rows(first, min(ROWS, first + size))
            writer.types(clean)
            writer.write(rows)
        writer.close()
        digests.add(digest(file))
    assert len(digests) == 1
    back = pd.read_csv(file) if csv else pd.read_parquet(file)
    assert len(back) == ROWS and back["fraud_probability"].isna().sum() == len(range(5, ROWS, 97))
    if not csv:  # as a file written whole: nullable where rows were held, the scored types otherwise
        assert str(back["transaction_id"].dtype) == "int64" and back["decision"].isna().sum() > 0


def test_gate_results_add_up_and_name_the_rows():
    def result(failing: int, rows: int) -> GateResult:
        check = CheckResult("tx_amount:nonzero", "pandera", "quarantine", not failing, failing, rows, "x", ["0.0"])
        return GateResult("warn" if failing else "pass", rows, rows - failing, failing, [check], [])

    tally = GateTally()
    tally.add("rows 1-100", result(0, 100))
    tally.add("rows 101-200", result(3, 100))
    merged = tally.result()
    assert (merged.verdict, merged.rows_in, merged.rows_quarantined) == ("warn", 200, 3)
    (check,) = merged.checks
    assert not check.passed and check.failing == 3 and check.total == 200 and check.detail == "rows 101-200: x"
    one = GateTally()
    one.add("", result(3, 100))
    assert one.result() == result(3, 100)  # a whole batch keeps its own result


def test_ids_seen_in_earlier_chunks():
    seen = SeenIds()
    assert not seen.repeated(pd.Series([1, 2, 3])).any()
    assert seen.repeated(pd.Series(["3", "4"])).tolist() == [True, False]  # read as text in another chunk: one id
