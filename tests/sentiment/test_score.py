"""`aiflow score sentiment` end to end in a throwaway repo: the champion by its DVC hash, each input layout
(class folders, a flat folder, a CSV with or without labels, aclImdb's unsup/), provenance on every row, the
shadow evaluation only with labels, the evaluated scores reproduced, byte-identical rescoring, bad inputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.common.contract import ScoreOptions
from domains.common.registry import load_params
from domains.sentiment.params import SentimentParams
from domains.sentiment.score import read_batch, score_batch
from tests.conftest import digest, promoted_copy, run
from tests.sentiment.conftest import reviews, small_sentiment_params, write_csv, write_files

pytestmark = pytest.mark.slow
PROVENANCE = ["model_version", "model_md5", "input_sha256"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    # The ensemble: nbsvm's joblib and fasttext's torch weights; the small fasttext alone is below the threshold.
    return promoted_copy(tmp_path_factory, "sentiment", small_sentiment_params(), evaluate={"candidate": "ensemble"})


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> dict[str, Path]:
    """New reviews from another seed, in every layout scoring reads; 150 documents, enough to judge drift."""
    folder = tmp_path_factory.mktemp("batches")
    docs = reviews(n_train=100, n_test=50, seed=7).reset_index(drop=True)
    classes = write_files(
        folder / "classes", {f"{row.label}/{i}.txt": row.text.encode() for i, row in enumerate(docs.itertuples())}
    )
    flat = write_files(folder / "flat", {f"{i:03d}.txt": row.text.encode() for i, row in enumerate(docs.itertuples())})
    unsup = write_files(
        folder / "unsup",
        {f"{i}_0.txt": (row.text + "<br /><br />").encode() for i, row in enumerate(docs.itertuples())},
    )
    return {
        "classes": classes,
        "flat": flat,
        "unsup": unsup,
        "labelled.csv": write_csv(folder / "labelled.csv", docs, split=False),
        "new.csv": write_csv(folder / "new.csv", docs.assign(label=""), split=False),
    }


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def score(repo, monkeypatch, capsys) -> Callable[..., Result]:
    """`aiflow score sentiment ...` in the repo: a fresh process with `fresh=True`, else this one (`aiflow.cli.main`,
    the same code path without paying torch's import for every call)."""
    from aiflow.cli import main

    monkeypatch.setenv("AIFLOW_ROOT", str(repo))
    monkeypatch.chdir(repo)

    def call(*args: object, check: bool = True, fresh: bool = False) -> Result:
        argv = ["score", "sentiment", *map(str, args)]
        if fresh:
            proc = run(["aiflow", *argv], repo, check=False)
            result = Result(proc.returncode, proc.stdout, proc.stderr)
        else:
            capsys.readouterr()
            code = main(argv)
            captured = capsys.readouterr()
            result = Result(code, captured.out, captured.err)
        assert not check or result.returncode == 0, result.stderr
        return result

    return call


def scored(out: Path) -> tuple[pd.DataFrame, dict]:
    return pd.read_parquet(out / "predictions.parquet"), json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize(
    "layout, source, labelled",
    [
        ("classes", "text-folder", True),
        ("flat", "text-folder", False),
        ("labelled.csv", "csv", True),
        ("new.csv", "csv", False),
        ("unsup", "aclimdb", False),
    ],
)
def test_scores_each_layout_with_the_champion(score, batches, tmp_path, layout, source, labelled):
    out = tmp_path / "scored"
    proc = score(batches[layout], "--source", source, "--out", out, fresh=layout == "classes")
    assert "scored 150 of 150 rows with v1 (ensemble)" in proc.stdout, proc.stdout
    predictions, manifest = scored(out)
    assert list(predictions.columns[:3]) == ["item_id", "label", "positive_probability"]
    assert set(predictions["label"]) <= {"neg", "pos"} and predictions["positive_probability"].between(0, 1).all()
    assert ((predictions["positive_probability"] >= 0.5) == (predictions["label"] == "pos")).all()
    for column in PROVENANCE:
        assert predictions[column].notna().all() and predictions[column].nunique() == 1, column
    assert predictions["model_md5"].iloc[0] == manifest["model"]["dvc_md5"]
    assert predictions["input_sha256"].iloc[0] == manifest["input_sha256"]
    if layout == "flat":
        assert predictions["item_id"].iloc[0] == "000.txt"
    if layout == "unsup":  # IMDB's <br /> is stripped before tokenising, as in training; the gate reports it
        assert any("markup:no_residue" in w for w in manifest["gate"]["info"])
    assert {c["column"] for c in manifest["drift"]["checks"]} == {"n_tokens", "unseen_share", "model_score"}
    assert manifest["drift"]["verdict"] in ("pass", "warn")
    if labelled:  # another seed of the training generator: the model does about as well as on its test split
        assert manifest["shadow_metrics"]["accuracy"] > 0.55 and manifest["shadow_metrics"]["labelled"] == 150
        assert 0.55 < manifest["shadow_metrics"]["auroc"] <= 1
    else:
        assert manifest["shadow_metrics"] is None
        assert "The batch has no labels: no metrics." in (out / "report.html").read_text()


def test_scoring_reproduces_the_evaluated_scores(repo, score, tmp_path):
    """The test split scored as a new batch gives each model's evaluated probabilities, and the champion's
    shadow metrics are its evaluated ones."""
    data = repo / "data" / "sentiment"
    documents = pd.read_parquet(data / "prepare" / "documents.parquet")
    expected = pd.read_parquet(data / "train" / "predictions.parquet").query("split == 'test'").set_index("item_id")
    test = documents[documents["split"] == "test"]
    batch = write_csv(tmp_path / "test.csv", test, split=False)
    out = tmp_path / "scored"
    score(batch, "--source", "csv", "--out", out)
    predictions, manifest = scored(out)
    np.testing.assert_allclose(
        predictions["positive_probability"], expected.loc[test["item_id"], "ensemble"], atol=1e-6
    )
    evaluated = json.loads((data / "evaluate" / "metrics.json").read_text())["ensemble"]
    assert manifest["shadow_metrics"]["accuracy"] == pytest.approx(evaluated["accuracy"])
    assert manifest["shadow_metrics"]["auroc"] == pytest.approx(evaluated["auroc"])

    trained = json.loads((data / "train" / "trained_params.json").read_text())
    params = SentimentParams.model_validate({**load_params(repo, "sentiment").model_dump(mode="json"), **trained})
    table = read_batch(params, batch, "csv")
    for model in ("tfidf_logreg", "nbsvm", "fasttext"):  # the models the registry did not pick, in-process
        got = score_batch(params, data / "train", model, table, ScoreOptions())
        np.testing.assert_allclose(got.scores, expected.loc[test["item_id"], model], atol=1e-6, err_msg=model)


def test_rescoring_gives_identical_bytes(score, batches, tmp_path):
    """Parquet from two processes (each its own hash seed), and CSV."""
    score(batches["flat"], "--out", tmp_path / "a", fresh=True)
    score(batches["flat"], "--out", tmp_path / "b")
    assert (tmp_path / "a/predictions.parquet").read_bytes() == (tmp_path / "b/predictions.parquet").read_bytes()
    score(batches["flat"], "--out", tmp_path / "c", "--csv")
    score(batches["flat"], "--out", tmp_path / "d", "--csv")
    assert (tmp_path / "c/predictions.csv").read_bytes() == (tmp_path / "d/predictions.csv").read_bytes()


def _refused(score: Callable[..., Result], batch: Path, tmp_path: Path, *args: object, gate: bool = False) -> str:
    """Exit 1, `error:` and one line (a gate block: then one indented line per failed check), nothing written."""
    before, out = digest(batch), tmp_path / "never"
    proc = score(batch, "--out", out, *args, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and lines and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr and (
        all(line.startswith("  ") for line in lines[1:]) if gate else len(lines) == 1
    ), proc.stderr
    assert not out.exists() and digest(batch) == before
    return proc.stderr


def test_bad_inputs_stop_with_one_line(score, batches, tmp_path):
    bad = tmp_path / "bad"
    files = write_files(
        bad,
        {
            "fraud.csv": b"TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT\n0,2018-04-01 00:00:31,596,3156,57.16\n",
            "header_only.csv": b"text,label\n",
            "images/0.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40),
            "binary/0.txt": b"\xff\xfeg\x00o\x00o\x00d\x00",  # UTF-16: NUL bytes
            "latin1/pos/0.txt": "Un film tr\u00e8s r\u00e9ussi, good and great.".encode("latin-1"),
            "other_classes/positive/0.txt": b"good and great",
        },
    )
    (bad / "empty").mkdir()
    assert "missing required column(s): text" in _refused(score, files / "fraud.csv", tmp_path, "--source", "csv")
    assert "unknown source 'sst2'" in _refused(score, batches["flat"], tmp_path, "--source", "sst2")
    assert "no rows (header only)" in _refused(score, files / "header_only.csv", tmp_path, "--source", "csv")
    assert "no .txt documents" in _refused(score, bad / "empty", tmp_path)
    assert "no .txt documents" in _refused(score, files / "images", tmp_path)  # medical's / defects' format
    assert "binary data" in _refused(score, files / "binary", tmp_path)
    assert "decoding:utf8 [pandera]: 1 of 1 rows fail utf8; e.g. pos/0.txt" in _refused(
        score, files / "latin1", tmp_path, gate=True
    )
    assert "label:in_classes" in _refused(score, files / "other_classes", tmp_path, gate=True)
    assert "no reviews found" in _refused(score, batches["flat"], tmp_path, "--source", "aclimdb")


def test_a_batch_unlike_the_training_text_is_blocked_by_drift(score, tmp_path):
    """Reviews in words the model never saw: the unseen-token share drifts, the batch is blocked, nothing written."""
    rng = np.random.default_rng(3)
    words = ["".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), 6)) for _ in range(300)]
    batch = write_files(
        tmp_path / "foreign", {f"{i}.txt": " ".join(rng.choice(words, 40)).encode() for i in range(120)}
    )
    error = _refused(score, batch, tmp_path, gate=True)
    assert "drift blocked the sentiment batch" in error and "drift unseen_share: PSI" in error


@pytest.mark.parametrize(
    "layout, source, rows",
    [("labelled.csv", "csv", 40), ("labelled.csv", "csv", 149), ("flat", "text-folder", 40), ("unsup", "aclimdb", 40)],
)
def test_chunks_give_the_whole_batchs_bytes(score, batches, tmp_path, layout, source, rows):
    """Each layout read `rows` documents at a time (149: the last chunk is one document, which a batch of one
    scores through other kernels unless padded) against the batch at once: the same predictions, byte for byte,
    and the same counts, notes, drift and shadow metrics."""
    manifests = {}
    for chunk_rows in (0, rows):
        score(batches[layout], "--source", source, "--chunk-rows", chunk_rows, "--out", tmp_path / str(chunk_rows))
        manifests[chunk_rows] = scored(tmp_path / str(chunk_rows))[1]
    assert digest(tmp_path / "0" / "predictions.parquet") == digest(tmp_path / str(rows) / "predictions.parquet")
    whole, chunked = manifests[0], manifests[rows]
    assert whole["counts"]["chunks"] == 1 and chunked["counts"]["chunks"] == -(-150 // rows)
    assert {k: v for k, v in whole["counts"].items() if k != "chunks"} == {
        k: v for k, v in chunked["counts"].items() if k != "chunks"
    }
    assert whole["notes"] == chunked["notes"] and whole["shadow_metrics"] == chunked["shadow_metrics"]
    assert (whole["shadow_metrics"] is not None) == (layout == "labelled.csv")
    assert [(c["psi"], c["ks_pvalue"]) for c in whole["drift"]["checks"]] == [
        (c["psi"], c["ks_pvalue"]) for c in chunked["drift"]["checks"]
    ]
