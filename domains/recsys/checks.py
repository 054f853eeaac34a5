"""The recommender gate: a pandera contract for each rating, GX expectations for the batch.

Check names (what params' gate.severity overrides) are `<column>:<check>` for pandera and the
`meta["check"]` of each GX expectation. Checks written here take any column as read (text in an
id column fails `dtype`/`integer`, and is not reported again by the other checks of the column).
Pandera checks here block or quarantine; warnings and infos are GX's (see with_gate_columns).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from domains.common.gate import GateSuite
from domains.common.params import Severity
from domains.recsys.params import RecsysParams

# Columns acquire adds for the gate (prepare keeps only the canonical four).
PAIR = "pair"  # "<user_id>:<item_id>" as read
USER_RATINGS, ITEM_RATINGS = "user_ratings", "item_ratings"  # ratings of the row's user / item in the file

SEVERITIES: dict[str, Severity] = {
    f"{PAIR}:unique": "quarantine",  # which of two ratings of the same pair is right is unknown: set both aside
    "user_id:enough_ratings": "warn",
    # Every real catalogue has a long tail of rarely rated items: a fact to report, not a fault.
    "item_id:enough_ratings": "info",
    "ratings_vary": "warn",
}


def with_gate_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The table plus what the gate checks that no single rating holds.

    - pair: the (user, item) key as text; duplicates are found by this column's uniqueness, which
      the shared gate reports per row, so they can be quarantined with their reason.
    - user_ratings / item_ratings: how many ratings each row's user and item have, for the GX
      "enough ratings" expectations. (As pandera warnings they would stop the gate's GX pass.)
    """
    return table.assign(
        **{
            PAIR: table["user_id"].astype(str) + ":" + table["item_id"].astype(str),
            USER_RATINGS: table.groupby("user_id", dropna=False, sort=False)["user_id"]
            .transform("size")
            .astype("int64"),
            ITEM_RATINGS: table.groupby("item_id", dropna=False, sort=False)["item_id"]
            .transform("size")
            .astype("int64"),
        }
    )


def _numbers(series: pd.Series) -> pd.Series:
    """The values as floats; text and missing values become NaN (reported by dtype / not_null)."""
    return pd.to_numeric(series, errors="coerce").astype(float)


def _integer(series: pd.Series) -> pd.Series:
    """Whole numbers only: 7 and 7.0 pass, 7.5, 'seven' and inf fail (missing values: not_null's job)."""
    x = _numbers(series)
    return series.isna() | (np.isfinite(x) & (np.floor(x) == x))


def _between(lo: float, hi: float):
    def check(series: pd.Series) -> pd.Series:
        x = _numbers(series)
        return x.isna() | ((x >= lo) & (x <= hi))

    return check


def _on_step(lo: float, step: float):
    def check(series: pd.Series) -> pd.Series:
        x = _numbers(series)
        k = (x - lo) / step
        return x.isna() | np.isclose(k, np.round(k))

    return check


def _seconds(date: str) -> int:
    return int(pd.Timestamp(date).timestamp())


def ratings_schema(p: RecsysParams) -> pa.DataFrameSchema:
    g = p.gate
    ids = [pa.Check(_integer, name="integer"), pa.Check(_between(0, np.inf), name="non_negative")]
    return pa.DataFrameSchema(
        {
            # Nullable Int64 refuses lossy casts (7.5 -> 7), unlike int64; prepare narrows to int64.
            "user_id": pa.Column("Int64", ids),
            "item_id": pa.Column("Int64", ids),
            "rating": pa.Column(
                "float64",
                [
                    pa.Check(_between(g.rating_min, g.rating_max), name="in_scale"),
                    pa.Check(_on_step(g.rating_min, g.rating_step), name="on_step"),
                ],
            ),
            "timestamp": pa.Column(
                "Int64",
                [
                    pa.Check(_integer, name="integer"),
                    pa.Check(_between(_seconds(g.time_min), _seconds(g.time_max)), name="plausible"),
                ],
            ),
            PAIR: pa.Column("str", unique=True, report_duplicates="all"),
        },
        coerce=True,
        strict=False,
    )


def batch_expectations(p: RecsysParams) -> list:
    import great_expectations.expectations as gxe  # heavy import, only when gating

    g = p.gate
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=g.min_rows, meta={"check": "enough_rows"}),
        gxe.ExpectColumnUniqueValueCountToBeBetween(
            column="user_id", min_value=g.min_users, meta={"check": "enough_users"}
        ),
        gxe.ExpectColumnUniqueValueCountToBeBetween(
            column="item_id", min_value=g.min_items, meta={"check": "enough_items"}
        ),
        # Users and items with few ratings are learnt badly (the rows of such users / items fail).
        gxe.ExpectColumnValuesToBeBetween(
            column=USER_RATINGS, min_value=g.min_user_ratings, meta={"check": "user_id:enough_ratings"}
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=ITEM_RATINGS, min_value=g.min_item_ratings, meta={"check": "item_id:enough_ratings"}
        ),
        # A constant rating column (an export that wrote a default) teaches nothing: a human decides.
        gxe.ExpectColumnStdevToBeBetween(column="rating", min_value=0.1, meta={"check": "ratings_vary"}),
    ]


def gate_suite(p: RecsysParams) -> GateSuite:
    return GateSuite(schema=ratings_schema(p), expectations=batch_expectations(p), severities=SEVERITIES)
