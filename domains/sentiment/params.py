"""Typed params of the NLP sentiment domain (the `sentiment:` section of params.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from domains.common.params import DataParams, DomainParams, EvaluateParams, ItemGateParams, StrictModel, TrainerParams

ModelName = Literal["tfidf_logreg", "nbsvm", "fasttext"]
ENSEMBLE = "ensemble"  # the mean probability of `train.ensemble`'s models


class SentimentDataParams(DataParams):
    """Where the documents are, and the declared labels: negative first, positive second."""

    classes: list[str] = Field(
        default_factory=lambda: ["neg", "pos"],
        description="the two labels, negative then positive (aclimdb's neg/pos and sst2's 0/1 map onto them)",
    )
    test_fraction: float = Field(
        0.25, gt=0, lt=1, description="text-folder / csv without a split: seeded, stratified test share"
    )

    @model_validator(mode="after")
    def _two_labels(self) -> SentimentDataParams:
        if len(self.classes) != 2 or len(set(self.classes)) != 2 or not all(c.strip() for c in self.classes):
            raise ValueError("classes must be two distinct, non-empty labels: negative first, positive second")
        return self


class SyntheticParams(StrictModel):
    """Review-like documents from a known lexicon: the clean label is the sign of the text's score."""

    n_train: int = Field(10_000, ge=20)
    n_test: int = Field(4000, ge=20)
    noise_rate: float = Field(
        0.05, ge=0, lt=0.5, description="share of labels flipped: the best accuracy is 1 - noise_rate"
    )
    mean_opinions: float = Field(4.0, ge=1, description="opinion sentences per review (log-normal, at least one)")
    mean_filler: float = Field(5.0, ge=0, description="neutral sentences per review (log-normal)")
    length_sigma: float = Field(0.6, ge=0, description="log-normal spread of the sentence counts: varied lengths")
    agreement: float = Field(
        0.85, gt=0.5, le=1, description="share of a review's opinions that agree with its overall sentiment"
    )
    negation_rate: float = Field(
        0.25, ge=0, le=1, description="share of opinions negated ('not good'): flipped and halved"
    )
    intensifier_rate: float = Field(
        0.3, ge=0, le=1, description="share of opinions intensified ('very good') or hedged"
    )


class SentimentGateParams(ItemGateParams):
    """The item-table bounds (items per class and split, class shares) plus the text checks' own."""

    min_docs_per_split: int = Field(100, ge=1, description="documents in each of train and test, at least")
    length_outlier_z: float = Field(
        5.0, gt=0, description="robust z-score of log(tokens) beyond which a length is reported"
    )


class PrepareParams(StrictModel):
    """Tokenisation and n-gram counts, fitted on the training documents only."""

    val_fraction: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="seeded, stratified slice of train for early stopping (unless the source has val)",
    )
    ngram_max: int = Field(
        3, ge=1, le=5, description="n-grams counted up to this length; each model uses its own maximum"
    )
    min_df: int = Field(2, ge=1, description="an n-gram is kept when at least this many training documents hold it")
    strip_markup: bool = Field(
        True, description="HTML tags and entities (IMDB's <br />) become spaces before tokenising"
    )


class SentimentTrainParams(TrainerParams):
    """The classical models' settings, the torch fastText-style model's (plus the shared trainer's)."""

    models: list[ModelName] = ["tfidf_logreg", "nbsvm", "fasttext"]
    ensemble: list[ModelName] = Field(
        ["nbsvm", "fasttext"], description="models whose mean probability is the 'ensemble' model ([] for none)"
    )
    tfidf_ngram_max: int = Field(2, ge=1)
    logreg_c: float = Field(10.0, gt=0, description="inverse L2 strength of the TF-IDF logistic regression")
    nbsvm_ngram_max: int = Field(3, ge=1)
    nbsvm_c: float = Field(
        1.0, gt=0, description="inverse L2 strength of the logistic regression on NB-scaled features"
    )
    nbsvm_alpha: float = Field(1.0, gt=0, description="smoothing of the naive-Bayes log-count ratios")
    fasttext_ngram_max: int = Field(2, ge=1)
    fasttext_dim: int = Field(10, ge=1, description="embedding size (fastText uses 10 for sentiment)")
    fasttext_buckets: int = Field(
        1 << 20, ge=0, description="n-grams hashed into this many embedding rows (0: one row per n-gram)"
    )
    word_vectors: str | None = Field(
        None, description="optional local .vec (fastText) or .txt (GloVe) file initialising word embeddings"
    )


class SentimentEvaluateParams(EvaluateParams):
    length_groups: int = Field(5, ge=1, description="test documents in this many groups of equal size by length")
    top_ngrams: int = Field(15, ge=1, description="n-grams per class shown for each linear model")
    mistakes: int = Field(8, ge=0, description="most confidently wrong test documents shown, with their evidence")


class SentimentParams(DomainParams):
    data: SentimentDataParams
    synthetic: SyntheticParams = SyntheticParams()
    gate: SentimentGateParams = SentimentGateParams()
    prepare: PrepareParams = PrepareParams()
    train: SentimentTrainParams = SentimentTrainParams()
    evaluate: SentimentEvaluateParams

    @model_validator(mode="after")
    def _models_consistent(self) -> SentimentParams:
        t = self.train
        if not t.models:
            raise ValueError("train.models: at least one model")
        if len(t.ensemble) == 1:
            raise ValueError("train.ensemble: name two or more models, or none")
        if set(t.ensemble) - set(t.models):
            raise ValueError(f"train.ensemble: {sorted(set(t.ensemble) - set(t.models))} not in train.models")
        orders = {
            "tfidf_ngram_max": t.tfidf_ngram_max,
            "nbsvm_ngram_max": t.nbsvm_ngram_max,
            "fasttext_ngram_max": t.fasttext_ngram_max,
        }
        too_long = [k for k, v in orders.items() if v > self.prepare.ngram_max]
        if too_long:
            raise ValueError(f"train.{too_long[0]} is above prepare.ngram_max={self.prepare.ngram_max}")
        trained = [*t.models, *([ENSEMBLE] if len(t.ensemble) > 1 else [])]
        if self.evaluate.candidate not in trained:
            raise ValueError(
                f"evaluate.candidate '{self.evaluate.candidate}' is not trained; models: {', '.join(trained)}"
            )
        if untrained := [b for b in self.evaluate.baselines if b not in trained]:
            raise ValueError(f"evaluate.baselines: '{untrained[0]}' is not trained; models: {', '.join(trained)}")
        return self
