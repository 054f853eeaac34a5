"""A fastText-style classifier in torch (Joulin et al. 2017, "Bag of Tricks"), trained by the shared trainer.

A document is the bag of its distinct 1- to n-grams; each n-gram is hashed into one of `buckets`
embedding rows, the document vector is the mean of its rows, and a linear layer maps it to the two
classes. Because the mean and the output are linear, each n-gram has one weight towards the
positive class, w . e divided by the bag's size, so the model is explained like the linear ones.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from domains.common.trainer import ROWS_ALIGNED, Batches, History, fit
from domains.sentiment.features import presence
from domains.sentiment.params import SentimentTrainParams
from domains.sentiment.vectors import read_word_vectors


class BagOfNgrams(nn.Module):
    """Mean of the bag's embedding rows, then a linear layer. The mean is an index_add over the rows
    read by index_select: on CPU its backward pass is about three times faster than nn.EmbeddingBag's."""

    def __init__(self, rows: int, dim: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)  # the model's own generator: same seed, same start, whatever ran before
        self.embedding = nn.Parameter((torch.rand(rows, dim, generator=g) * 2 - 1) / dim)  # fastText's init
        self.out = nn.Linear(dim, 2)
        with torch.no_grad():  # nn.Linear's own init, drawn from `g`
            bound = 1 / dim**0.5
            self.out.weight.copy_((torch.rand(2, dim, generator=g) * 2 - 1) * bound)
            self.out.bias.copy_((torch.rand(2, generator=g) * 2 - 1) * bound)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """`ids`: the bags' rows one after another; `offsets`: where each bag starts."""
        sizes = torch.diff(offsets, append=offsets.new_tensor([len(ids)]))
        bag = torch.repeat_interleave(torch.arange(len(offsets), device=ids.device), sizes)
        summed = torch.zeros(len(offsets), self.embedding.shape[1], device=ids.device, dtype=self.embedding.dtype)
        summed.index_add_(0, bag, self.embedding.index_select(0, ids))
        return self.out(summed / sizes.clamp(min=1).unsqueeze(1).to(summed.dtype))


def bucket_rows(ngrams: pd.Series, buckets: int) -> np.ndarray:
    """Each n-gram's embedding row: a stable hash modulo `buckets` (0: a row per n-gram)."""
    if buckets == 0:
        return np.arange(len(ngrams), dtype=np.int64)
    return np.fromiter((zlib.crc32(g.encode()) % buckets for g in ngrams), dtype=np.int64, count=len(ngrams))


class Bags:
    """Documents as bags of embedding rows: `take(documents)` -> (ids, offsets) for the model."""

    def __init__(self, counts: sp.csr_matrix, columns: np.ndarray, rows: np.ndarray):
        """`columns`: the vocabulary's n-grams the model reads; `rows`: each vocabulary n-gram's embedding row."""
        x = presence(counts, columns)
        self.ids = torch.from_numpy(rows[columns][x.indices])
        self.starts = torch.from_numpy(x.indptr.astype(np.int64))
        self.count = x.shape[0]

    def take(self, documents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first, sizes = self.starts[documents], self.starts[documents + 1] - self.starts[documents]
        offsets = torch.cumsum(sizes, 0) - sizes
        where = torch.repeat_interleave(first - offsets, sizes) + torch.arange(int(sizes.sum()))
        return self.ids[where], offsets


class FastText:
    """The model with what it needs to train: columns it reads, hashing, trainer settings, checkpoint."""

    def __init__(
        self,
        vocabulary: pd.DataFrame,
        columns: np.ndarray,
        t: SentimentTrainParams,
        seed: int,
        checkpoint: Path,
        fingerprint: str,
    ):
        self.columns, self.t, self.seed = columns, t, seed
        self.checkpoint, self.fingerprint = checkpoint, fingerprint
        self.rows = np.zeros(len(vocabulary), dtype=np.int64)
        self.rows[columns] = bucket_rows(vocabulary["ngram"][columns], t.fasttext_buckets)
        n_rows = t.fasttext_buckets or int(columns.sum())
        self.model = BagOfNgrams(n_rows, t.fasttext_dim, seed)
        self.vectors_found = self._initialise(vocabulary, Path(t.word_vectors)) if t.word_vectors else None

    def _initialise(self, vocabulary: pd.DataFrame, vector_file: Path) -> dict[str, int]:
        """Word rows from the local vector file; n-gram rows keep their random start."""
        words = vocabulary.loc[self.columns & (vocabulary["order"].to_numpy() == 1), "ngram"]
        vectors = read_word_vectors(vector_file, set(words), self.t.fasttext_dim)
        with torch.no_grad():
            for index, word in words.items():
                if word in vectors:
                    self.model.embedding[int(self.rows[index])] = torch.from_numpy(vectors[word])
        return {"words": len(words), "found": len(vectors)}

    def fit(self, counts: sp.csr_matrix, y: np.ndarray, val_counts: sp.csr_matrix, val_y: np.ndarray) -> History:
        bags, target = Bags(counts, self.columns, self.rows), torch.from_numpy(y.astype(np.int64))
        val_bags = Bags(val_counts, self.columns, self.rows)

        def take(documents: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return (*bags.take(documents), target[documents])

        def val_accuracy(model: nn.Module) -> float:
            return float(np.mean((self._proba(model, val_bags)[:, 1] >= 0.5) == val_y))

        self.history = fit(
            self.model,
            Batches(bags.count, take),
            nn.functional.cross_entropy,
            val_accuracy,
            self.t,
            self.seed,
            self.checkpoint,
            self.fingerprint,
            name="fasttext",
        )
        self.typical_bag = float(np.median(np.diff(bags.starts.numpy()))) if bags.count else 1.0
        return self.history

    @staticmethod
    @torch.no_grad()
    def _proba(model: nn.Module, bags: Bags, batch: int = 2048) -> np.ndarray:
        model.eval()
        device = next(model.parameters()).device
        out = []
        for s in range(0, bags.count, batch):
            ids, offsets = bags.take(torch.arange(s, min(s + batch, bags.count)))
            n = len(offsets)
            # empty bags up to a multiple of ROWS_ALIGNED (see trainer.predict): a document's bits do not depend
            # on how many share its batch, so a batch scored in chunks gets the whole batch's
            offsets = torch.cat([offsets, offsets.new_full((-n % ROWS_ALIGNED,), len(ids))])
            out.append(torch.softmax(model(ids.to(device), offsets.to(device)).float(), 1)[:n].cpu())
        return torch.cat(out).numpy().astype(np.float64) if out else np.empty((0, 2))

    def predict_proba(self, counts: sp.csr_matrix) -> np.ndarray:
        return self._proba(self.model, Bags(counts, self.columns, self.rows))

    @torch.no_grad()
    def ngram_weights(self) -> np.ndarray:
        """(w_pos - w_neg) . e / m of each n-gram's row: its push on the log-odds in a training document of the
        median bag size m (a document of k n-grams: times m / k), comparable with the linear models' weights."""
        direction = (self.model.out.weight[1] - self.model.out.weight[0]).float().cpu()
        per_row = (self.model.embedding.detach().float().cpu() @ direction).numpy().astype(
            np.float64
        ) / self.typical_bag
        weights = np.zeros(len(self.columns))
        weights[self.columns] = per_row[self.rows[self.columns]]
        return weights

    def save(self, path: Path) -> None:
        # Tensors and plain values only, so scoring can load it with weights_only=True (no pickled code).
        torch.save(
            {
                "state_dict": self.model.cpu().state_dict(),
                "columns": torch.from_numpy(self.columns),
                "rows": torch.from_numpy(self.rows),
                "dim": self.t.fasttext_dim,
            },
            path,
        )


def load_fasttext(path: Path) -> Callable[[sp.csr_matrix], np.ndarray]:
    """The saved model as a function of a count matrix (the training vocabulary's columns) -> P(class) per row."""
    saved = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values: no code runs
    columns, rows = saved["columns"].numpy(), saved["rows"].numpy()
    n_rows, dim = saved["state_dict"]["embedding"].shape
    model = BagOfNgrams(n_rows, dim, seed=0)
    model.load_state_dict(saved["state_dict"])
    return lambda counts: FastText._proba(model, Bags(counts, columns, rows))
