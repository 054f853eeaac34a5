"""Typed params of the finance-fraud domain (the `fraud:` section of params.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from domains.common.params import DomainParams, EvaluateParams, GateParams, StrictModel, TrainerParams


class SyntheticParams(StrictModel):
    """Size and behaviour of the transaction simulator (after Le Borgne et al.'s handbook)."""

    n_customers: int = Field(1000, ge=10)
    n_terminals: int = Field(10000, ge=10)
    n_days: int = Field(120, ge=14)
    start_date: str = "2018-04-01"
    radius: float = Field(5.0, gt=0, description="customers use terminals within this distance on a 100x100 grid")
    compromised_terminals_per_day: int = Field(2, ge=0, description="scenario 2: terminals compromised for 28 days")
    compromised_customers_per_day: int = Field(1, ge=0, description="scenario 3: cards compromised for 14 days")


class FraudGateParams(GateParams):
    """Bounds the fraud gate checks, next to the shared severities and quarantine limit."""

    fraud_rate_min: float = Field(0.0005, ge=0, le=1)
    fraud_rate_max: float = Field(0.2, ge=0, le=1)
    amount_max: float = Field(1_000_000.0, gt=0, description="larger amounts are implausible, not just large")
    time_min: str = "2000-01-01"
    time_max: str = "2035-12-31"
    min_rows: int = Field(1000, ge=1)


class PrepareParams(StrictModel):
    """Leak-free features and the time-based split (train period, label delay gap, test period)."""

    customer_windows_days: list[int] = Field(default_factory=lambda: [1, 7, 30])
    terminal_windows_days: list[int] = Field(default_factory=lambda: [1, 7, 30])
    delay_days: int = Field(7, ge=0, description="labels are known only this many days after a transaction")
    split_unit: Literal["day", "hour"] = Field(
        "day", description="unit of the split lengths (hour: for short data such as ULB's 2 days)"
    )
    train_start: str | None = Field(
        None, description="start of training; default: first day + the feature windows' warm-up"
    )
    train_length: int = Field(42, ge=2, description="train period, in split units, validation included")
    val_length: int = Field(7, ge=1, description="last units of the train period held out for early stopping")
    gap_length: int = Field(7, ge=0, description="units between train and test: labels not yet known at deployment")
    test_length: int = Field(21, ge=1)


class FraudTrainParams(TrainerParams):
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.1, ge=0, lt=1)
    logreg_c: float = Field(1.0, gt=0)
    hgb_max_iter: int = Field(200, ge=1)
    hgb_learning_rate: float = Field(0.1, gt=0)


class FraudEvaluateParams(EvaluateParams):
    top_k: int = Field(100, ge=1, description="cards per day for card precision@k")
    fpr: float = Field(0.01, gt=0, lt=1, description="false-positive rate at which recall is reported")
    decision_threshold: float = Field(0.5, gt=0, lt=1, description="score threshold of the confusion matrix")


class FraudParams(DomainParams):
    synthetic: SyntheticParams = SyntheticParams()
    gate: FraudGateParams = FraudGateParams()
    prepare: PrepareParams = PrepareParams()
    train: FraudTrainParams = FraudTrainParams()
    evaluate: FraudEvaluateParams
