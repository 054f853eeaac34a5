"""The sentiment domain's acquire and prepare steps: documents in, n-gram counts and splits out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from domains.common.items import stratified_split
from domains.sentiment.checks import LABEL_INDEX, with_gate_columns
from domains.sentiment.features import count_ngrams, save_features
from domains.sentiment.loaders import read_documents
from domains.sentiment.params import SentimentParams
from domains.sentiment.synthetic import FLIPPED, generate_reviews, noise_floor
from domains.sentiment.text import tokenise

TRUTH = "truth.parquet"  # synthetic only: each review's clean label, lexicon score, and whether its label was flipped
DOCUMENTS = "documents.parquet"  # prepared: the gated documents with their final split (train / val / test)
NOISE_FLOOR = "noise_floor.json"
PROFILE = "profile.json"
KEPT = ["item_id", "split", "label", LABEL_INDEX, "text", "length", "n_tokens", "stars"]


def acquire(p: SentimentParams, out_dir: Path) -> pd.DataFrame:
    """One row per document from the configured source, with the facts the gate checks (the source is only read)."""
    if p.data.source == "synthetic":
        reviews = generate_reviews(p.synthetic, p.data.classes, p.seed)
        reviews.truth.to_parquet(out_dir / TRUTH)
        return with_gate_columns(reviews.documents, p.data.classes)
    documents = read_documents(p.data.source, Path(p.data.path), p.data.classes, p.data.test_fraction, p.seed)
    return with_gate_columns(documents, p.data.classes)


def prepare(p: SentimentParams, table: pd.DataFrame, acquire_dir: Path, out_dir: Path) -> None:
    """The validation slice (seeded, stratified, from train unless the source has one) and n-gram counts
    whose vocabulary comes from the training slice only."""
    q = p.prepare
    # A canonical order: splits and counts depend on the seed, not on the order files were listed in.
    documents = table[KEPT].sort_values("item_id", kind="stable").reset_index(drop=True)
    undeclared = int((documents[LABEL_INDEX] < 0).sum())  # only where gate.severity lets label:in_classes warn
    documents = documents[documents[LABEL_INDEX] >= 0].reset_index(drop=True)
    split = documents["split"].to_numpy(dtype=object)
    if not (split == "val").any():
        train = np.flatnonzero(split == "train")
        split[train[stratified_split(documents[LABEL_INDEX].to_numpy()[train], q.val_fraction, p.seed)]] = "val"
    documents["split"] = split
    tokens = [tokenise(text, q.strip_markup) for text in documents["text"]]
    counts, vocabulary = count_ngrams(tokens, split == "train", q.ngram_max, q.min_df)
    if (acquire_dir / TRUTH).is_file():  # synthetic: which labels the generator flipped, and the best any model can do
        flipped = pd.read_parquet(acquire_dir / TRUTH).set_index("item_id")["flipped"]
        documents[FLIPPED] = flipped.loc[documents["item_id"]].to_numpy()
        floor = noise_floor(p.synthetic.noise_rate, documents.loc[documents["split"] == "test", FLIPPED])
        (out_dir / NOISE_FLOOR).write_text(json.dumps(floor, indent=2))
    documents.to_parquet(out_dir / DOCUMENTS)
    save_features(counts, vocabulary, out_dir)
    profile = data_profile(documents, vocabulary)
    if undeclared:
        profile["left_out"] = {"documents with an undeclared label": undeclared}
    (out_dir / PROFILE).write_text(json.dumps(profile, indent=2))


def data_profile(documents: pd.DataFrame, vocabulary: pd.DataFrame) -> dict:
    by_split = documents.groupby("split", sort=False)
    return {
        "documents": {s: int(n) for s, n in by_split.size().items()},
        "positive_share": {s: round(float((g[LABEL_INDEX] == 1).mean()), 4) for s, g in by_split},
        "median_tokens": {s: float(g["n_tokens"].median()) for s, g in by_split},
        "vocabulary": {f"{n}-grams": int(c) for n, c in vocabulary["order"].value_counts().sort_index().items()},
    }
