"""Recommender: MovieLens-style ratings (synthetic, ml-100k, ml-latest-small, ml-1m); Surprise baselines and a torch MF."""

from domains.common.contract import DomainSpec, MetricContract
from domains.recsys.checks import gate_suite
from domains.recsys.evaluate import evaluate_models
from domains.recsys.metrics import DIRECTIONS
from domains.recsys.params import RecsysParams
from domains.recsys.pipeline import SOURCES, acquire, prepare
from domains.recsys.train import train_models

DOMAIN = DomainSpec(
    name="recsys",
    title="Recommender (MovieLens ratings)",
    params_model=RecsysParams,
    sources=SOURCES,
    metric=MetricContract(primary="rmse", higher_is_better=DIRECTIONS),
    acquire=acquire,
    gate_suite=gate_suite,
    prepare=prepare,
    train=train_models,
    evaluate=evaluate_models,
)
