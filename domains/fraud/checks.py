"""The fraud gate: a pandera contract for each transaction row, GX expectations for the batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from domains.common.gate import GateSuite
from domains.fraud.params import FraudParams


def _finite(series: pd.Series) -> pd.Series:
    return pd.Series(np.isfinite(series.to_numpy(dtype=float)), index=series.index)


def _scenario_matches_label(frame: pd.DataFrame) -> pd.Series:
    """Where the simulator's scenario column exists, a fraud scenario implies a fraud label."""
    if "tx_fraud_scenario" not in frame:
        return pd.Series(True, index=frame.index)
    return (frame["tx_fraud_scenario"] > 0) == (frame["tx_fraud"] == 1)


def transaction_schema(p: FraudParams, labels: bool = True) -> pa.DataFrameSchema:
    """The row contract; labels=False (scoring) makes the label optional and drops the label-only rule."""
    c = p.gate
    return pa.DataFrameSchema(
        {
            "transaction_id": pa.Column("int64", pa.Check.ge(0, name="non_negative"), unique=True),
            "tx_datetime": pa.Column(
                "datetime64[ns]",
                pa.Check.in_range(pd.Timestamp(c.time_min), pd.Timestamp(c.time_max), name="in_time_range"),
            ),
            "customer_id": pa.Column("int64", pa.Check.ge(0, name="non_negative"), required=False),
            "terminal_id": pa.Column("int64", pa.Check.ge(0, name="non_negative"), required=False),
            "tx_amount": pa.Column(
                "float64",
                [
                    pa.Check(_finite, name="finite"),
                    pa.Check.ge(0, name="non_negative"),
                    pa.Check.ne(0, name="nonzero"),  # $0 authorisations: not purchases, set aside
                    pa.Check.le(c.amount_max, name="plausible"),
                ],
            ),
            "tx_fraud": pa.Column("int64", pa.Check.isin([0, 1], name="binary"), required=labels),
            "tx_fraud_scenario": pa.Column("int64", pa.Check.isin([0, 1, 2, 3], name="known"), required=False),
            r"^v\d+$": pa.Column("float64", pa.Check(_finite, name="finite"), regex=True, required=False),
        },
        checks=[pa.Check(_scenario_matches_label, name="scenario_matches_label")] if labels else [],
        coerce=True,
        strict=False,
    )


def batch_expectations(p: FraudParams, labels: bool = True) -> list:
    import great_expectations.expectations as gxe  # heavy import, only when gating

    c = p.gate
    training = (
        [
            gxe.ExpectTableRowCountToBeBetween(min_value=c.min_rows, meta={"check": "enough_rows"}),
            gxe.ExpectColumnMeanToBeBetween(
                column="tx_fraud",
                min_value=c.fraud_rate_min,
                max_value=c.fraud_rate_max,
                meta={"check": "fraud_rate_in_band"},
            ),
        ]
        if labels
        else []
    )  # a scoring batch may be small and has no labels
    return [
        *training,
        # Distribution drift signals: recorded as warnings, a human decides.
        gxe.ExpectColumnMedianToBeBetween(
            column="tx_amount", min_value=1.0, max_value=1000.0, meta={"check": "amount_median_plausible"}
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="tx_amount", min_value=0.0, max_value=10_000.0, mostly=0.999, meta={"check": "amount_tail_small"}
        ),
        *(
            [
                gxe.ExpectColumnUniqueValueCountToBeBetween(
                    column="tx_datetime", min_value=2, meta={"check": "timestamps_vary"}
                )
            ]
            if labels
            else []
        ),
    ]


def gate_suite(p: FraudParams, labels: bool = True) -> GateSuite:
    return GateSuite(
        schema=transaction_schema(p, labels),
        expectations=batch_expectations(p, labels),
        severities={
            "tx_amount:nonzero": "quarantine",
            "scenario_matches_label": "warn",
            "amount_median_plausible": "warn",
            "amount_tail_small": "warn",
        },
    )


def scoring_suite(p: FraudParams) -> GateSuite:
    """The training suite minus what needs labels or a training-sized batch."""
    return gate_suite(p, labels=False)
