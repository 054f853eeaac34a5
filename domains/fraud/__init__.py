"""Finance fraud: card transactions (handbook simulator, handbook table, ULB creditcard.csv)."""

from domains.common.contract import DomainSpec, MetricContract
from domains.fraud.checks import gate_suite
from domains.fraud.evaluate import evaluate_models
from domains.fraud.models import train_models
from domains.fraud.params import FraudParams
from domains.fraud.pipeline import SOURCES, acquire, prepare

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
    train=train_models,
    evaluate=evaluate_models,
)
