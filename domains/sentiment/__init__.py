"""NLP sentiment: labelled documents (synthetic, aclimdb, sst2, text-folder, csv); TF-IDF + logistic
regression, NBSVM and a fastText-style torch model."""

from domains.common.classification import DIRECTIONS, RANGES
from domains.common.contract import DomainSpec, MetricContract, ScoringSpec, ServingSpec, lazy
from domains.sentiment.params import SentimentParams

SOURCES = ("synthetic", "aclimdb", "sst2", "text-folder", "csv")

DOMAIN = DomainSpec(
    name="sentiment",
    title="NLP sentiment (movie reviews)",
    params_model=SentimentParams,
    sources=SOURCES,
    metric=MetricContract(
        primary="accuracy",
        higher_is_better=DIRECTIONS,
        ranges=RANGES,
        intervals={"accuracy": "accuracy", "auroc": "auroc"},
    ),
    acquire=lazy("domains.sentiment.pipeline:acquire"),
    gate_suite=lazy("domains.sentiment.checks:gate_suite"),
    prepare=lazy("domains.sentiment.pipeline:prepare"),
    train=lazy("domains.sentiment.train:train_models"),
    evaluate=lazy("domains.sentiment.evaluate:evaluate_models"),
    scoring=ScoringSpec(
        sources=("text-folder", "csv", "aclimdb"),  # aclimdb: <id>_<stars>.txt, e.g. its unlabelled train/unsup/
        read=lazy("domains.sentiment.score:read_batch"),
        read_chunks=lazy("domains.sentiment.score:read_chunks"),
        gate_suite=lazy("domains.sentiment.checks:scoring_suite"),
        reference=lazy("domains.sentiment.score:reference"),
        score=lazy("domains.sentiment.score:score_batch"),
        serving=ServingSpec(
            request=lazy("domains.sentiment.serve:request_model"),
            table=lazy("domains.sentiment.serve:to_table"),
            tables=lazy("domains.sentiment.serve:to_tables"),
            describe=lazy("domains.sentiment.serve:describe"),
            onnx=lazy("domains.sentiment.serve:onnx"),
        ),
    ),
    export=lazy("domains.sentiment.export:export_models"),
    slice_columns={
        "tokens": "the document's length in tokens",
        "negation": "whether the document has a negation (not, no, never, -n't, ...)",
    },
)
