"""Sentiment fixtures: small params for fast real runs, and documents written in each published layout."""

from __future__ import annotations

import copy
import io
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from domains.sentiment.params import SyntheticParams
from domains.sentiment.synthetic import generate_reviews
from tests.conftest import ROOT, project_root


def small_sentiment_params() -> dict:
    """The sentiment section at a size that runs end to end in seconds."""
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text())["sentiment"])
    params["synthetic"].update(n_train=400, n_test=200)
    params["gate"].update(min_per_class=10, min_docs_per_split=20)
    params["train"].update(epochs=3, fasttext_buckets=4096, fasttext_dim=8, num_threads=1)
    params["evaluate"].update(thresholds_min={"accuracy": 0.55}, baselines=[], top_ngrams=5, mistakes=3)
    return params


def reviews(n_train: int = 60, n_test: int = 40, seed: int = 1) -> pd.DataFrame:
    """Synthetic reviews with clean labels: item_id, split, label (neg / pos), text."""
    return generate_reviews(
        SyntheticParams(n_train=n_train, n_test=n_test, noise_rate=0.0), ["neg", "pos"], seed
    ).documents


def write_text_folder(root: Path, docs: pd.DataFrame, splits: bool = True) -> Path:
    """<split>/<label>/<n>.txt (or <label>/<n>.txt without `splits`)."""
    for i, row in enumerate(docs.itertuples()):
        folder = root / row.split / row.label if splits else root / row.label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.txt").write_text(row.text, encoding="utf-8")
    return root


def aclimdb_files(docs: pd.DataFrame) -> dict[str, bytes]:
    """aclImdb v1 paths -> bytes: aclImdb/<split>/<pos|neg>/<id>_<stars>.txt (stars 1-4 negative, 7-10 positive),
    with the release's other files around them."""
    files = {
        "aclImdb/README": b"Large Movie Review Dataset v1.0\n",
        "aclImdb/imdb.vocab": b"the\nand\n",
        "aclImdb/train/unsup/0_0.txt": b"unlabelled review",
        "aclImdb/train/urls_pos.txt": b"http://x\n",
    }
    for i, row in enumerate(docs.itertuples()):
        stars = 8 + i % 3 if row.label == "pos" else 1 + i % 4
        files[f"aclImdb/{row.split}/{row.label}/{i}_{stars}.txt"] = (row.text + "<br /><br />The end.").encode()
    return files


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_sst2(root: Path, docs: pd.DataFrame) -> Path:
    """GLUE SST-2: train.tsv and dev.tsv (the test split), `sentence<TAB>label`, labels 0 / 1, bare quotes."""
    root.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train.tsv"), ("test", "dev.tsv")):
        part = docs[docs["split"] == split]
        lines = ["sentence\tlabel"] + [
            f'{t.lower()} "quoted {i}\t{int(label == "pos")}'
            for i, (t, label) in enumerate(zip(part["text"], part["label"]))
        ]
        (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_csv(path: Path, docs: pd.DataFrame, split: bool = True) -> Path:
    docs[["text", "label", "split"] if split else ["text", "label"]].to_csv(path, index=False)
    return path


@pytest.fixture
def sentiment_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sentiment project root for in-process stage runs (see tests.conftest.project_root)."""
    return project_root(tmp_path, monkeypatch, "sentiment", small_sentiment_params())
