"""Finance fraud: card transactions (handbook simulator, handbook table, ULB creditcard.csv).

Stage functions import their modules when called, so a light stage (acquire, prepare) does not
pay for torch, scikit-learn and matplotlib at start-up.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from domains.common.contract import DomainSpec, Evaluation, MetricContract, TrainEnv
from domains.common.gate import GateSuite
from domains.fraud.params import FraudParams

SOURCES = ("synthetic", "handbook", "ulb")


def acquire(p: FraudParams, out_dir: Path) -> pd.DataFrame:
    from domains.fraud.pipeline import acquire

    return acquire(p, out_dir)


def gate_suite(p: FraudParams) -> GateSuite:
    from domains.fraud.checks import gate_suite

    return gate_suite(p)


def prepare(p: FraudParams, table: pd.DataFrame, acquire_dir: Path, out_dir: Path) -> None:
    from domains.fraud.pipeline import prepare

    prepare(p, table, acquire_dir, out_dir)


def train(p: FraudParams, prepared_dir: Path, out_dir: Path, env: TrainEnv) -> None:
    from domains.fraud.models import train_models

    train_models(p, prepared_dir, out_dir, env)


def evaluate(p: FraudParams, prepared_dir: Path, train_dir: Path, out_dir: Path) -> Evaluation:
    from domains.fraud.evaluate import evaluate_models

    return evaluate_models(p, prepared_dir, train_dir, out_dir)


DOMAIN = DomainSpec(
    name="fraud",
    title="Finance fraud detection",
    params_model=FraudParams,
    sources=SOURCES,
    metric=MetricContract(
        primary="average_precision",
        higher_is_better={"auroc": True, "average_precision": True, "card_precision_at_k": True, "recall_at_fpr": True},
    ),
    acquire=acquire,
    gate_suite=gate_suite,
    prepare=prepare,
    train=train,
    evaluate=evaluate,
)
