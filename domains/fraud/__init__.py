"""Finance fraud: card transactions (handbook simulator, handbook table, ULB creditcard.csv)."""

from domains.common.contract import UNIT, DomainSpec, MetricContract, ScoringSpec, ServingSpec, lazy
from domains.fraud.params import FraudParams

DOMAIN = DomainSpec(
    name="fraud",
    title="Finance fraud detection",
    params_model=FraudParams,
    sources=("synthetic", "handbook", "ulb"),
    metric=MetricContract(
        primary="average_precision",
        higher_is_better={"auroc": True, "average_precision": True, "card_precision_at_k": True, "recall_at_fpr": True},
        intervals={"average_precision": "average_precision", "auroc": "auroc"},
        ranges={m: UNIT for m in ("auroc", "average_precision", "card_precision_at_k", "recall_at_fpr")},
    ),
    acquire=lazy("domains.fraud.pipeline:acquire"),
    gate_suite=lazy("domains.fraud.checks:gate_suite"),
    prepare=lazy("domains.fraud.pipeline:prepare"),
    train=lazy("domains.fraud.train:train_models"),
    evaluate=lazy("domains.fraud.evaluate:evaluate_models"),
    scoring=ScoringSpec(
        sources=("handbook", "ulb"),
        read=lazy("domains.fraud.score:read_batch"),
        read_chunks=lazy("domains.fraud.score:read_chunks"),
        gate_suite=lazy("domains.fraud.checks:scoring_suite"),
        reference=lazy("domains.fraud.score:reference"),
        score=lazy("domains.fraud.score:score_batch"),
        id_column="transaction_id",
        serving=ServingSpec(
            request=lazy("domains.fraud.serve:request_model"),
            table=lazy("domains.fraud.serve:to_table"),
            tables=lazy("domains.fraud.serve:to_tables"),
            combine=lazy("domains.fraud.serve:combine"),
            describe=lazy("domains.fraud.serve:describe"),
            onnx=lazy("domains.fraud.serve:onnx"),
        ),
    ),
    export=lazy("domains.fraud.export:export_models"),
    slice_columns={
        "amount": "transaction amount",
        "hour": "hour of the transaction (0-23)",
        "history": "the card's transactions in the longest customer window",
    },
    slice_sources={"history": ("synthetic", "handbook")},  # ULB has no card ids
)
