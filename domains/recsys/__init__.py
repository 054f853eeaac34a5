"""Recommender: MovieLens-style ratings (synthetic, ml-100k, ml-latest-small, ml-1m); Surprise baselines and a torch MF."""

from domains.common.contract import DomainSpec, MetricContract, lazy
from domains.recsys.loaders import FORMATS
from domains.recsys.metrics import DIRECTIONS
from domains.recsys.params import RecsysParams

DOMAIN = DomainSpec(
    name="recsys",
    title="Recommender (MovieLens ratings)",
    params_model=RecsysParams,
    sources=("synthetic", *FORMATS),
    metric=MetricContract(primary="rmse", higher_is_better=DIRECTIONS),
    acquire=lazy("domains.recsys.pipeline:acquire"),
    gate_suite=lazy("domains.recsys.checks:gate_suite"),
    prepare=lazy("domains.recsys.pipeline:prepare"),
    train=lazy("domains.recsys.train:train_models"),
    evaluate=lazy("domains.recsys.evaluate:evaluate_models"),
)
