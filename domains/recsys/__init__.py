"""Recommender: MovieLens-style ratings (synthetic, ml-100k, ml-latest-small, ml-1m); Surprise baselines and a torch MF.

Stage functions import their modules when called, so a light stage (acquire, prepare) does not
pay for torch, Surprise and matplotlib at start-up.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from domains.common.contract import DomainSpec, Evaluation, MetricContract, TrainEnv
from domains.common.gate import GateSuite
from domains.recsys.loaders import FORMATS
from domains.recsys.metrics import DIRECTIONS
from domains.recsys.params import RecsysParams

SOURCES = ("synthetic", *FORMATS)


def acquire(p: RecsysParams, out_dir: Path) -> pd.DataFrame:
    from domains.recsys.pipeline import acquire

    return acquire(p, out_dir)


def gate_suite(p: RecsysParams) -> GateSuite:
    from domains.recsys.checks import gate_suite

    return gate_suite(p)


def prepare(p: RecsysParams, table: pd.DataFrame, acquire_dir: Path, out_dir: Path) -> None:
    from domains.recsys.pipeline import prepare

    prepare(p, table, acquire_dir, out_dir)


def train(p: RecsysParams, prepared_dir: Path, out_dir: Path, env: TrainEnv) -> None:
    from domains.recsys.train import train_models

    train_models(p, prepared_dir, out_dir, env)


def evaluate(p: RecsysParams, prepared_dir: Path, train_dir: Path, out_dir: Path) -> Evaluation:
    from domains.recsys.evaluate import evaluate_models

    return evaluate_models(p, prepared_dir, train_dir, out_dir)


DOMAIN = DomainSpec(
    name="recsys",
    title="Recommender (MovieLens ratings)",
    params_model=RecsysParams,
    sources=SOURCES,
    metric=MetricContract(primary="rmse", higher_is_better=DIRECTIONS),
    acquire=acquire,
    gate_suite=gate_suite,
    prepare=prepare,
    train=train,
    evaluate=evaluate,
)
