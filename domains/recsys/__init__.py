"""Recommender: MovieLens-style ratings (synthetic, ml-100k, ml-latest-small, ml-1m); rating models (Surprise, a torch
MF) and implicit-feedback ranking models (EASE, item-kNN, BPR, Mult-VAE) against popularity."""

from domains.common.contract import DomainSpec, MetricContract, ScoringSpec, ServingSpec, lazy
from domains.recsys.loaders import FORMATS
from domains.recsys.metrics import DIRECTIONS, RANGES
from domains.recsys.params import RecsysParams

DOMAIN = DomainSpec(
    name="recsys",
    title="Recommender (MovieLens ratings)",
    params_model=RecsysParams,
    sources=("synthetic", *FORMATS),
    metric=MetricContract(
        primary="ndcg_at_10",
        higher_is_better=DIRECTIONS,
        ranges=RANGES,  # recsys.evaluate.primary overrides
        intervals={
            **{m: f"mean:{m}" for m in ("ndcg_at_10", "precision_at_10", "recall_at_10", "map_at_10")},
            "rmse": "rmse:sse",
        },
    ),  # per user: the bootstrap resamples users
    acquire=lazy("domains.recsys.pipeline:acquire"),
    gate_suite=lazy("domains.recsys.checks:gate_suite"),
    prepare=lazy("domains.recsys.pipeline:prepare"),
    train=lazy("domains.recsys.train:train_models"),
    evaluate=lazy("domains.recsys.evaluate:evaluate_models"),
    export=lazy("domains.recsys.export:export_models"),
    scoring=ScoringSpec(
        sources=("users", "pairs", *FORMATS),
        read=lazy("domains.recsys.score:read_batch"),
        gate_suite=lazy("domains.recsys.score:scoring_suite"),
        reference=lazy("domains.recsys.score:reference"),
        score=lazy("domains.recsys.score:score_batch"),
        id_column="user_id",
        default_source="users",  # top-k for user ids; a MovieLens file needs --source
        serving=ServingSpec(
            request=lazy("domains.recsys.serve:request_model"),
            table=lazy("domains.recsys.serve:to_table"),
            respond=lazy("domains.recsys.serve:respond"),
            describe=lazy("domains.recsys.serve:describe"),
            onnx=lazy("domains.recsys.serve:onnx"),
        ),
    ),
    slice_columns={
        "activity": "the user's training ratings",
        "popularity": "median training ratings of the user's held-out items",
        "age": "the user's age (1M: the release's age code)",
        "gender": "the user's gender",
    },
    slice_sources={"age": ("ml-100k", "ml-1m"), "gender": ("ml-100k", "ml-1m")},  # u.user, users.dat
)
