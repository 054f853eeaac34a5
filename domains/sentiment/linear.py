"""The classical models: TF-IDF + logistic regression, and NBSVM (Wang & Manning 2012).

Both take the prepared count matrix and select the n-gram orders they use. Both are linear in
their features, so each n-gram has one weight: what its presence pushes a document's log-odds
towards the positive class by (the report's top n-grams and its explanations of mistakes).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression

from domains.sentiment.features import presence


def _logistic_regression(c: float, seed: int, x: sp.spmatrix) -> LogisticRegression:
    # liblinear's dual solver is the fast one when there are more n-grams than documents.
    return LogisticRegression(C=c, solver="liblinear", dual=x.shape[1] > x.shape[0], max_iter=1000, random_state=seed)


class TfidfLogreg:
    """Sublinear TF-IDF of 1- to n-grams (L2-normalised per document), then L2 logistic regression."""

    def __init__(self, columns: np.ndarray, c: float, seed: int):
        self.columns, self.c, self.seed = columns, c, seed

    def _tfidf_input(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        return counts[:, self.columns].astype(np.float64)

    def fit(self, counts: sp.csr_matrix, y: np.ndarray, *validation: object) -> TfidfLogreg:
        """Fit on the training documents (the validation slice is not used: the settings come from params)."""
        x = self._tfidf_input(counts)
        self.tfidf = TfidfTransformer(sublinear_tf=True).fit(x)
        z = self.tfidf.transform(x)
        self.model = _logistic_regression(self.c, self.seed, z).fit(z, y)
        unnormalised = TfidfTransformer(sublinear_tf=True, norm=None).fit(x).transform(x)
        self.typical_norm = (
            float(np.median(np.sqrt(np.asarray(unnormalised.multiply(unnormalised).sum(axis=1)).ravel()))) or 1.0
        )
        return self

    def predict_proba(self, counts: sp.csr_matrix) -> np.ndarray:
        return self.model.predict_proba(self.tfidf.transform(self._tfidf_input(counts)))

    def ngram_weights(self) -> np.ndarray:
        """Coefficient x idf / n: the push of one occurrence on the log-odds in a training document whose
        TF-IDF vector has the median norm n (the vector is L2-normalised per document)."""
        weights = np.zeros(len(self.columns))
        weights[self.columns] = self.model.coef_.ravel() * self.tfidf.idf_ / self.typical_norm
        return weights


class NBSVM:
    """Naive-Bayes features, discriminative classifier (Wang & Manning 2012, the logistic-regression
    variant): each n-gram's presence is scaled by its NB log-count ratio

        r = log((alpha + p) / |alpha + p|_1) - log((alpha + q) / |alpha + q|_1),

    p and q the number of positive and negative training documents holding it, and an L2 logistic
    regression is fitted on the scaled presences. The ratio does the heavy lifting on little data
    (naive Bayes), the regression corrects its independence assumption on more.
    """

    def __init__(self, columns: np.ndarray, c: float, alpha: float, seed: int):
        self.columns, self.c, self.alpha, self.seed = columns, c, alpha, seed

    def fit(self, counts: sp.csr_matrix, y: np.ndarray, *validation: object) -> NBSVM:
        """Fit on the training documents (the validation slice is not used: the settings come from params)."""
        x = presence(counts, self.columns)
        self.ratios = log_count_ratios(x, y, self.alpha)
        z = x @ sp.diags(self.ratios.astype(np.float32))
        self.model = _logistic_regression(self.c, self.seed, z).fit(z, y)
        return self

    def predict_proba(self, counts: sp.csr_matrix) -> np.ndarray:
        return self.model.predict_proba(presence(counts, self.columns) @ sp.diags(self.ratios.astype(np.float32)))

    def ngram_weights(self) -> np.ndarray:
        """Coefficient x ratio: exactly what the n-gram's presence adds to the log-odds."""
        weights = np.zeros(len(self.columns))
        weights[self.columns] = self.model.coef_.ravel() * self.ratios
        return weights


def log_count_ratios(x: sp.csr_matrix, y: np.ndarray, alpha: float) -> np.ndarray:
    """The NB log-count ratio of each column of the presence matrix `x` (class 1 vs class 0)."""
    p = alpha + np.asarray(x[y == 1].sum(axis=0), dtype=np.float64).ravel()
    q = alpha + np.asarray(x[y == 0].sum(axis=0), dtype=np.float64).ravel()
    return np.log(p / p.sum()) - np.log(q / q.sum())
