"""Typed params of the recommender domain (the `recsys:` section of params.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from domains.common.params import DomainParams, EvaluateParams, GateParams, StrictModel, TrainerParams
from domains.recsys.metrics import ACCURACY

SurpriseModel = Literal["baseline_only", "svd", "svdpp", "knn_baseline"]
RankingModel = Literal["ease", "item_knn", "bpr", "vae"]


class SyntheticParams(StrictModel):
    """Ratings drawn from a known biased low-rank model plus Gaussian noise, rounded onto the scale."""

    n_users: int = Field(600, ge=10)
    n_items: int = Field(1000, ge=10)
    n_ratings: int = Field(40_000, ge=100, description="about this many ratings in all")
    min_user_ratings: int = Field(20, ge=1, description="every user rates at least this many items (as in MovieLens)")
    min_item_ratings: int = Field(5, ge=1, description="every item is rated at least this many times")
    activity_sigma: float = Field(
        1.0, ge=0, description="log-normal spread of ratings per user: the tail is a few very active users"
    )
    popularity_exponent: float = Field(0.9, ge=0, description="Zipf exponent of item popularity (0: uniform)")
    selection_strength: float = Field(
        1.0, ge=0, description="users rather rate what they expect to like: log-weight per point of latent rating"
    )
    rank: int = Field(3, ge=1, description="dimension of the users' tastes")
    global_mean: float = Field(2.8, description="latent mean; selection lifts the observed mean (~3.5 by default)")
    user_bias_std: float = Field(0.4, ge=0)
    item_bias_std: float = Field(0.5, ge=0)
    taste_std: float = Field(
        0.8, ge=0, description="standard deviation of the taste term (user factors . item factors)"
    )
    noise_std: float = Field(0.7, ge=0, description="standard deviation of the noise added before rounding")
    rating_min: int = 1
    rating_max: int = 5
    start_date: str = "2015-01-01"
    n_days: int = Field(730, ge=1, description="timestamps fall in [start_date, start_date + n_days)")

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticParams:
        if self.rating_max <= self.rating_min:
            raise ValueError("rating_max must be above rating_min")
        if self.min_user_ratings > self.n_items or self.min_item_ratings > self.n_users:
            raise ValueError("min_user_ratings must be <= n_items and min_item_ratings <= n_users")
        return self


class RecsysGateParams(GateParams):
    """The declared rating scale and the bounds the gate checks, next to the shared severities."""

    rating_min: float = 1.0
    rating_max: float = 5.0
    rating_step: float = Field(1.0, gt=0, description="ratings lie on rating_min + k * step (0.5 for ml-latest-small)")
    time_min: str = Field("1995-01-01", description="earliest plausible timestamp (MovieLens starts in 1995)")
    time_max: str = "2035-12-31"
    min_rows: int = Field(1000, ge=1)
    min_users: int = Field(10, ge=1)
    min_items: int = Field(10, ge=1)
    min_user_ratings: int = Field(5, ge=1, description="users with fewer ratings are reported")
    min_item_ratings: int = Field(3, ge=1, description="items with fewer ratings are reported")

    @model_validator(mode="after")
    def _scale(self) -> RecsysGateParams:
        if self.rating_max <= self.rating_min:
            raise ValueError("rating_max must be above rating_min")
        return self


class PrepareParams(StrictModel):
    """The two evaluation protocols: k-fold over all ratings, and a per-user time-ordered hold-out."""

    n_folds: int = Field(5, ge=2, description="rating prediction: k-fold over all ratings, same folds for every model")
    holdout_per_user: int = Field(5, ge=1, description="top-k: each user's last n ratings (by time) are held out")
    min_train_ratings: int = Field(
        10, ge=1, description="top-k: only users keeping at least this many ratings get a hold-out"
    )


class EaseParams(StrictModel):
    lambdas: list[float] = Field(
        default_factory=lambda: [50.0, 100.0, 200.0, 500.0, 1000.0],
        min_length=1,
        description="ridge penalties tried on the validation slice (the best is refitted)",
    )

    @model_validator(mode="after")
    def _positive(self) -> EaseParams:
        if min(self.lambdas) <= 0:
            raise ValueError("every lambda must be > 0")
        return self


class ItemKnnParams(StrictModel):
    neighbours: list[int] = Field(
        default_factory=lambda: [20, 50, 100, 200],
        min_length=1,
        description="most similar items kept per item, tried on the validation slice",
    )

    @model_validator(mode="after")
    def _positive(self) -> ItemKnnParams:
        if min(self.neighbours) < 1:
            raise ValueError("every neighbour count must be >= 1")
        return self


class BprParams(StrictModel):
    """BPR matrix factorisation; epochs are chosen by early stopping on the validation slice's NDCG@10."""

    factors: int = Field(64, ge=1)
    reg: float = Field(0.01, ge=0, description="L2 penalty on the user, positive and negative item rows of each triple")
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(0.01, gt=0)
    patience: int = Field(4, ge=1)


class VaeParams(StrictModel):
    """Mult-VAE (Liang et al. 2018): [items] -> hidden -> latent -> hidden -> softmax over items."""

    hidden: int = Field(600, ge=1)
    latent: int = Field(200, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1, description="on the input (a user's items), as in the paper")
    beta: float = Field(0.2, ge=0, description="weight of the KL term after annealing (the paper's best cap)")
    anneal_epochs: int = Field(20, ge=0, description="beta rises linearly from 0 over these epochs")
    epochs: int = Field(150, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    patience: int = Field(5, ge=1)


class RecsysTrainParams(TrainerParams):
    """The torch matrix factorisation (shared trainer keys + its own), the Surprise models to run, and the
    implicit-feedback ranking models (device, threads and determinism are the shared keys above)."""

    factors: int = Field(32, ge=1)
    reg: float = Field(0.12, ge=0, description="L2 penalty on the factors of each rating's user and item")
    init_std: float = Field(0.01, gt=0)
    passes: int = Field(
        2, ge=1, description="training passes, each until early stopping (a step learning-rate schedule)"
    )
    lr_decay: float = Field(
        0.3, gt=0, le=1, description="each pass goes on from the best weights at lr_decay x the last lr"
    )
    val_fraction: float = Field(
        0.02, gt=0, lt=0.5, description="share of each training fold held out for early stopping"
    )
    surprise_models: list[SurpriseModel] = Field(
        ["baseline_only", "svd", "svdpp", "knn_baseline"],
        description="Surprise baselines, all with Surprise's defaults; svdpp is by far the slowest",
    )
    ranking_models: list[RankingModel] = Field(
        ["ease", "item_knn", "bpr", "vae"], description="implicit-feedback ranking models (popularity always runs)"
    )
    ease: EaseParams = EaseParams()
    item_knn: ItemKnnParams = ItemKnnParams()
    bpr: BprParams = BprParams()
    vae: VaeParams = VaeParams()


class RecsysEvaluateParams(EvaluateParams):
    primary: str = Field("ndcg_at_10", description="the metric that decides promotion against the champion")
    relevance_threshold: float = Field(
        4.0, description="a held-out rating at or above this is a relevant item for top-k"
    )
    topk_max_users: int = Field(
        2000, ge=1, description="top-k metrics on at most this many held-out users (a seeded sample)"
    )
    activity_bins: list[int] = Field(
        default_factory=lambda: [20, 50, 100, 200],
        description="edges of the user-activity groups (training ratings per user)",
    )
    example_users: int = Field(3, ge=0, description="users whose top-10 lists are shown in the report")

    @field_validator("primary")
    @classmethod
    def _computed(cls, value: str) -> str:
        if value not in ACCURACY:
            raise ValueError(f"'{value}' is not a metric the recommender computes; one of: {', '.join(ACCURACY)}")
        return value


class RecsysParams(DomainParams):
    synthetic: SyntheticParams = SyntheticParams()
    gate: RecsysGateParams = RecsysGateParams()
    prepare: PrepareParams = PrepareParams()
    train: RecsysTrainParams = RecsysTrainParams()
    evaluate: RecsysEvaluateParams
