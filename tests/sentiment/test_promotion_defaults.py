"""An IMDB-format archive with what real corpora have (repeated reviews, `<br />` markup, a very long review, a
review in both train and test) promotes a candidate that beats its baseline, with the default gate and evaluate
params: those facts are reported (info), the leaked test copy is set aside, and nothing counts as a warning."""

import json

import pandas as pd
import yaml

from aiflow.cli import main
from domains.common.paths import STAGES
from tests.conftest import ROOT, write_params
from tests.sentiment.conftest import aclimdb_files, reviews, small_sentiment_params, write_tar_gz


def test_an_imdb_like_archive_promotes_with_default_gate_and_evaluate_params(sentiment_root, capsys):
    docs = reviews(n_train=1200, n_test=500, seed=3)
    train = docs[docs["split"] == "train"]
    long_review = train.iloc[[0]].assign(text=" ".join(["A long, long film."] * 400))
    leaked = train.iloc[[1]].assign(split="test")
    docs = pd.concat([docs, train.head(25), long_review, leaked], ignore_index=True)  # 25 repeats within train
    data = write_tar_gz(sentiment_root / "aclImdb_v1.tar.gz", aclimdb_files(docs))  # every review ends in <br />
    defaults = yaml.safe_load((ROOT / "params.yaml").read_text())["sentiment"]
    params = small_sentiment_params()
    params.update(
        data={**defaults["data"], "source": "aclimdb", "path": str(data)},
        gate=defaults["gate"],
        evaluate=defaults["evaluate"],
    )
    # Small and fast; the baseline on unigrams, so the candidate's n-grams (negation: "not good") beat it here.
    params["train"].update(epochs=10, tfidf_ngram_max=1)
    write_params(sentiment_root, "sentiment", params)
    for stage in STAGES[:-1]:
        assert main(["stage", stage, "sentiment"]) == 0, capsys.readouterr().err
    data_dir = sentiment_root / "data" / "sentiment"
    gate = json.loads((data_dir / "validate/gate.json").read_text())
    failed = {c["name"]: c["severity"] for c in gate["checks"] if not c["passed"]}
    assert failed == {
        "duplicate_items": "info",
        "markup:no_residue": "info",
        "n_tokens:typical_length": "info",
        "split_leakage": "quarantine",
    }, failed
    assert gate["rows_quarantined"] == 1
    decision = json.loads((data_dir / "evaluate/decision.json").read_text())
    metrics = json.loads((data_dir / "evaluate/metrics.json").read_text())
    assert metrics["fasttext"]["accuracy"] > metrics["tfidf_logreg"]["accuracy"], metrics
    assert (decision["gate_warnings"], decision["decision"]) == (0, "promote"), decision["reason"]
    assert [t["baseline"] for t in decision["thresholds"]] == ["tfidf_logreg"]
