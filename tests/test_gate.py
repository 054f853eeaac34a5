"""The gate engine: pandera and GX behind one result, with block / warn / quarantine / info."""

import great_expectations.expectations as gxe
import pandas as pd
import pandera.pandas as pa
import pytest

from domains.common.errors import ParamsError
from domains.common.gate import GateSuite, check_names, render_gate_html, run_gate
from domains.common.params import GateParams


def _suite(**severities) -> GateSuite:
    schema = pa.DataFrameSchema(
        {
            "id": pa.Column("int64", unique=True),
            "amount": pa.Column("float64", pa.Check.ge(0, name="non_negative")),
            "label": pa.Column("int64", pa.Check.isin([0, 1], name="binary")),
        },
        coerce=True,
    )
    expectations = [
        gxe.ExpectColumnMeanToBeBetween(column="label", min_value=0.1, max_value=0.5, meta={"check": "label_rate"})
    ]
    return GateSuite(schema, expectations, severities)


def _table(n: int = 100) -> pd.DataFrame:
    return pd.DataFrame(
        {"id": range(n), "amount": [float(i) for i in range(n)], "label": [i % 4 == 0 for i in range(n)]}
    )


def test_clean_table_passes_and_every_check_is_listed():
    result, kept, quarantine = run_gate(_table(), _suite(), GateParams())
    assert result.verdict == "pass" and result.reasons == []
    assert len(kept) == 100 and quarantine.empty
    names = {c.name for c in result.checks}
    assert {"id:unique", "amount:non_negative", "label:binary", "label_rate"} <= names
    assert kept["label"].dtype == "int64"  # coerced by the schema


def test_block_names_the_check_and_examples():
    table = _table()
    table.loc[3, "amount"] = -7.5
    original = table.copy()
    result, _, _ = run_gate(table, _suite(), GateParams())
    assert result.verdict == "block"
    assert result.reasons == [
        "amount:non_negative [pandera]: 1 of 100 rows fail greater_than_or_equal_to(0); e.g. -7.5"
    ]
    pd.testing.assert_frame_equal(table, original)  # input untouched


def test_quarantine_moves_rows_aside_with_reason():
    table = _table()
    table.loc[[5, 9], "amount"] = -1.0
    result, kept, quarantine = run_gate(
        table, _suite(**{"amount:non_negative": "quarantine"}), GateParams(max_quarantine_fraction=0.05)
    )
    assert result.verdict == "warn" and result.rows_quarantined == 2 and result.rows_passed == 98
    assert list(quarantine.index) == [5, 9]
    assert set(quarantine["quarantine_reason"]) == {"amount:non_negative"}
    assert 5 not in kept.index


def test_info_is_recorded_with_its_count_and_changes_nothing():
    table = _table()
    table.loc[[3, 4], "amount"] = -1.0
    table["label"] = 1  # label rate 1.0: the GX check fails too
    suite = _suite(**{"amount:non_negative": "info", "label_rate": "info"})
    result, kept, quarantine = run_gate(table, suite, GateParams())
    assert result.verdict == "pass" and result.reasons == [] and result.warnings == []
    assert len(kept) == 100 and quarantine.empty
    failed = {c.name: c for c in result.checks if not c.passed}
    assert set(failed) == {"amount:non_negative", "label_rate"} and failed["amount:non_negative"].failing == 2
    assert all(c.severity == "info" for c in failed.values())


def test_row_level_warning_keeps_rows_and_still_runs_gx():
    table = _table()
    table.loc[3, "amount"] = -1.0
    result, kept, quarantine = run_gate(table, _suite(**{"amount:non_negative": "warn"}), GateParams(max_warnings=1))
    assert result.verdict == "warn" and result.reasons == []
    assert len(kept) == 100 and quarantine.empty
    assert kept["label"].dtype == "int64"  # coerced, as on a clean table
    assert "label_rate" in {c.name for c in result.checks}  # the GX pass was not skipped


def test_too_much_quarantine_blocks():
    table = _table()
    table.loc[:9, "amount"] = -1.0
    result, _, _ = run_gate(
        table, _suite(**{"amount:non_negative": "quarantine"}), GateParams(max_quarantine_fraction=0.05)
    )
    assert result.verdict == "block"
    assert "10 of 100 rows (10.00%) failed quarantine checks" in result.reasons[0]


def test_gx_statistical_check_blocks_or_warns():
    table = _table()
    table["label"] = 0
    blocked, _, _ = run_gate(table, _suite(), GateParams())
    assert blocked.verdict == "block" and blocked.reasons[0].startswith("label_rate [great_expectations]: observed 0")
    warned, _, _ = run_gate(table, _suite(label_rate="warn"), GateParams())
    assert warned.verdict == "warn" and [c.name for c in warned.warnings] == ["label_rate"]


def test_missing_column_and_wrong_type():
    table = _table().drop(columns="label")
    table["amount"] = table["amount"].astype(object)
    table.loc[2, "amount"] = "abc"
    result, _, _ = run_gate(table, _suite(), GateParams())
    lines = "\n".join(result.reasons)
    assert "label:present [pandera]: required column is missing" in lines
    assert "amount:dtype [pandera]: 1 of 100 rows fail" in lines and "abc" in lines


def test_unknown_severity_override_is_a_params_error():
    with pytest.raises(ParamsError, match="unknown check\\(s\\) amount:positive"):
        run_gate(_table(), _suite(), GateParams(severity={"amount:positive": "warn"}))
    assert "amount:non_negative" in check_names(_suite())


def test_html_is_self_contained():
    result, _, _ = run_gate(_table(), _suite(), GateParams())
    page = render_gate_html(result)
    assert "PASS" in page and "http" not in page


def test_regex_column_checks_are_named_by_their_pattern():
    schema = pa.DataFrameSchema({r"^v\d+$": pa.Column("float64", pa.Check.le(10, name="small"), regex=True)})
    table = pd.DataFrame({"v1": [1.0, 50.0], "v2": [2.0, 3.0]})
    result, _, _ = run_gate(table, GateSuite(schema), GateParams())
    assert result.reasons[0].startswith("^v\\d+$:small [pandera]: 1 of 2 rows fail")


def test_gx_data_docs_are_written(tmp_path):
    from domains.common.gate import write_gate_result

    result, _, _ = run_gate(_table(), _suite(), GateParams(), docs_dir=tmp_path / "gx_docs")
    write_gate_result(result, tmp_path)
    assert (tmp_path / "gx_docs" / "index.html").is_file()
    assert "gx_docs/index.html" in (tmp_path / "gate.html").read_text()
