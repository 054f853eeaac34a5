"""The recommender gate through the shared engine: each bad value is one named check, one line."""

import numpy as np
import pandas as pd
import pytest

from domains.common.gate import check_names, run_gate
from domains.recsys.checks import gate_suite, with_gate_columns
from domains.recsys.params import RecsysParams
from domains.recsys.synthetic import generate_ratings
from tests.recsys.conftest import small_recsys_params


@pytest.fixture(scope="module")
def params() -> RecsysParams:
    return RecsysParams.model_validate(small_recsys_params())


@pytest.fixture(scope="module")
def good(params) -> pd.DataFrame:
    return generate_ratings(params.synthetic, params.seed).ratings


def gate(params, table, **severity):
    p = (
        params.model_copy(update={"gate": params.gate.model_copy(update={"severity": severity})})
        if severity
        else params
    )
    return run_gate(with_gate_columns(table), gate_suite(p), p.gate)


def test_clean_ratings_pass_and_are_typed(params, good):
    result, kept, quarantine = gate(params, good)
    assert result.verdict == "pass", result.reasons
    assert len(kept) == len(good) and quarantine.empty
    assert str(kept["user_id"].dtype) == "Int64" and kept["rating"].dtype == "float64"


def test_every_check_has_a_name_for_severity_overrides(params):
    names = set(check_names(gate_suite(params)))
    assert {
        "user_id:integer",
        "item_id:enough_ratings",
        "rating:in_scale",
        "rating:on_step",
        "timestamp:plausible",
        "pair:unique",
        "enough_rows",
        "enough_users",
        "ratings_vary",
    } <= names


def _with(good: pd.DataFrame, column: str, rows: list[int], value) -> pd.DataFrame:
    table = good.copy()
    if isinstance(value, (str, float)):
        table[column] = table[column].astype(object)
    table.loc[rows, column] = value
    return table


@pytest.mark.parametrize(
    "column, value, expected",
    [
        ("rating", 0, "rating:in_scale [pandera]: 2 of"),
        ("rating", 11, "rating:in_scale [pandera]: 2 of"),
        ("rating", 3.5, "rating:on_step [pandera]: 2 of"),
        ("user_id", "abc", "user_id:integer [pandera]: 2 of"),
        ("item_id", 7.5, "item_id:integer [pandera]: 2 of"),
        ("user_id", np.nan, "user_id:not_null [pandera]: 2 of"),
        ("timestamp", 5, "timestamp:plausible [pandera]: 2 of"),
        ("item_id", -4, "item_id:non_negative [pandera]: 2 of"),
    ],
)
def test_bad_values_block_with_a_named_reason(params, good, column, value, expected):
    result, _, _ = gate(params, _with(good, column, [3, 8], value))
    assert result.verdict == "block"
    assert any(r.startswith(expected) for r in result.reasons), result.reasons


def test_duplicate_pairs_are_quarantined_with_reason(params, good):
    table = pd.concat([good, good.iloc[[0, 5]].assign(rating=1)], ignore_index=True)
    result, kept, quarantine = gate(params, table)
    assert result.verdict == "warn" and result.rows_quarantined == 4  # both copies: which one is right is unknown
    assert set(quarantine["quarantine_reason"]) == {"pair:unique"}
    assert not kept.duplicated(["user_id", "item_id"]).any() and len(kept) == len(table) - 4


def test_duplicates_block_when_told_to(params, good):
    table = pd.concat([good, good.iloc[[0]]], ignore_index=True)
    result, _, _ = gate(params, table, **{"pair:unique": "block"})
    assert result.verdict == "block" and result.reasons[0].startswith("pair:unique [pandera]: 2 of")


def test_out_of_scale_ratings_can_be_quarantined_instead(params, good):
    result, kept, quarantine = gate(params, _with(good, "rating", [1], 0), **{"rating:in_scale": "quarantine"})
    assert result.verdict == "warn" and list(quarantine.index) == [1] and len(kept) == len(good) - 1


def test_sparse_users_warn_and_rare_items_are_only_reported(params, good):
    lonely = pd.DataFrame(
        {"user_id": [9999], "item_id": [8888], "rating": [4], "timestamp": [good["timestamp"].iloc[0]]}
    )
    result, kept, quarantine = gate(params, pd.concat([good, lonely], ignore_index=True))
    assert result.verdict == "warn"
    assert {c.name for c in result.warnings} == {"user_id:enough_ratings"}
    rare = next(c for c in result.checks if c.name == "item_id:enough_ratings")
    assert rare.severity == "info" and not rare.passed and rare.failing == 1  # reported, counted, not a warning
    assert len(kept) == len(good) + 1 and quarantine.empty
    warning = next(c for c in result.warnings if c.name == "user_id:enough_ratings")
    assert warning.line().startswith("user_id:enough_ratings [great_expectations]: 1 of")


def test_a_constant_rating_column_warns(params, good):
    result, _, _ = gate(params, good.assign(rating=4))
    assert [c.name for c in result.warnings] == ["ratings_vary"]


def test_too_few_rows_blocks(params, good):
    result, _, _ = gate(params, good.head(50))
    assert result.verdict == "block" and any(r.startswith("enough_rows [great_expectations]") for r in result.reasons)


def test_a_long_tail_of_rare_items_passes_the_gate(params, good):
    """Real catalogues have many items rated once or twice (ml-100k: 209 under 3): not a data error."""
    rare = pd.DataFrame(
        {
            "user_id": good["user_id"].iloc[:30].to_numpy(),
            "item_id": np.arange(5000, 5030),
            "rating": 3,
            "timestamp": good["timestamp"].iloc[0],
        }
    )
    result, kept, quarantine = gate(params, pd.concat([good, rare], ignore_index=True))
    assert result.verdict == "pass" and result.reasons == [] and quarantine.empty and len(kept) == len(good) + 30
    assert next(c for c in result.checks if c.name == "item_id:enough_ratings").failing == 30
