"""Score every model on the test documents; figures, explanations and tables for the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from domains.common.classification import binary_proba, classification_metrics, decide, roc_rows
from domains.common.contract import Evaluation, Figure
from domains.common.figures import confusion_figure, reliability_figure, roc_figure, training_curve_figure
from domains.sentiment.checks import LABEL_INDEX
from domains.sentiment.explain import confident_mistakes, strongest, top_ngrams
from domains.sentiment.features import load_features
from domains.sentiment.params import ENSEMBLE, SentimentParams
from domains.sentiment.pipeline import DOCUMENTS, NOISE_FLOOR, PROFILE
from domains.sentiment.train import HISTORY, PREDICTIONS, TIMES, TORCH_MODEL, WEIGHTS


def evaluate_models(p: SentimentParams, prepared_dir: Path, train_dir: Path, out_dir: Path) -> Evaluation:
    documents = pd.read_parquet(prepared_dir / DOCUMENTS)
    counts, vocabulary = load_features(prepared_dir)
    predictions = pd.read_parquet(train_dir / PREDICTIONS)
    times = json.loads((train_dir / TIMES).read_text())
    weights = pd.read_parquet(train_dir / WEIGHTS)
    history = json.loads((train_dir / HISTORY).read_text())
    floor = json.loads((prepared_dir / NOISE_FLOOR).read_text()) if (prepared_dir / NOISE_FLOOR).is_file() else None
    profile = json.loads((prepared_dir / PROFILE).read_text())
    classes, candidate, models = p.data.classes, p.evaluate.candidate, list(times)

    test = predictions[predictions["split"] == "test"].reset_index(drop=True)
    val = predictions[predictions["split"] == "val"]
    y = test[LABEL_INDEX].to_numpy()
    probas = {m: binary_proba(test[m].to_numpy()) for m in models}
    metrics = {m: {**classification_metrics(y, probas[m]), **times[m]} for m in models}

    rows = documents.reset_index().set_index("item_id").loc[test["item_id"], "index"].to_numpy()
    test_documents = documents.iloc[rows].reset_index(drop=True)
    by_length = accuracy_by_length(test_documents["n_tokens"].to_numpy(), y, probas, p.evaluate.length_groups)
    explained = (
        candidate if candidate in weights.columns else ("nbsvm" if "nbsvm" in weights.columns else weights.columns[0])
    )

    figures = [
        _comparison_figure(metrics, models, floor),
        roc_figure(y, probas),
        reliability_figure(y, probas),
        confusion_figure(y, decide(probas[candidate]), classes, candidate, "Test documents, threshold 0.5."),
        _length_figure(by_length, models),
        _ngram_figure(weights[explained].to_numpy(), vocabulary, classes, explained, p.evaluate.top_ngrams),
    ]
    if history:
        figures.append(training_curve_figure(history, "validation accuracy", TORCH_MODEL))
    tables = {
        "accuracy_by_length": by_length,
        "top_ngrams": top_ngrams(weights, vocabulary, classes, p.evaluate.top_ngrams),
        "confident_mistakes": confident_mistakes(
            explained,
            test[explained].to_numpy(),
            y,
            test_documents,
            counts[rows],
            weights[explained].to_numpy(),
            vocabulary,
            classes,
            p.evaluate.mistakes,
            p.prepare.strip_markup,
        ),
        "validation": pd.DataFrame(
            [
                {
                    "model": m,
                    **{
                        k: v
                        for k, v in classification_metrics(
                            val[LABEL_INDEX].to_numpy(), binary_proba(val[m].to_numpy())
                        ).items()
                        if k in ("accuracy", "auroc", "log_loss")
                    },
                }
                for m in models
            ]
        ),
        "data_profile": _profile_table(profile),
    }
    if test_documents["stars"].notna().any():
        tables["accuracy_by_stars"] = accuracy_by_stars(test_documents["stars"], y, probas)
    if floor:
        tables["noise_floor"] = noise_floor_table(floor, metrics, models)
    plots = {
        "roc_curve": roc_rows(y, probas),
        "model_accuracy": pd.DataFrame({"model": models, "accuracy": [metrics[m]["accuracy"] for m in models]}),
    }
    notes = _notes(p, metrics, models, history, floor, profile, explained)
    return Evaluation(
        metrics=metrics,
        plots=plots,
        figures=figures,
        tables=tables,
        notes=notes,
        units=test_units(test, test_documents, y, models),
    )


NEGATION = re.compile(r"\b(?:not|no|never|nothing|nobody|none|neither|nor|without|hardly|\w+n't)\b", re.IGNORECASE)


def test_units(test: pd.DataFrame, documents: pd.DataFrame, y: np.ndarray, models: list[str]) -> pd.DataFrame:
    """Per-document predictions (the document is the bootstrap unit), with its length and whether it negates."""
    frame = pd.DataFrame(
        {
            "row": test["item_id"].astype(str).to_numpy(),
            "unit": test["item_id"].astype(str).to_numpy(),
            "label": np.asarray(y, dtype=np.int64),
        }
    )
    for m in models:
        frame[f"{m}:p1"] = test[m].to_numpy(np.float64)
    frame["slice:tokens"] = documents["n_tokens"].to_numpy(np.float64)
    frame["slice:negation"] = np.where(documents["text"].str.contains(NEGATION), "negation", "no negation")
    return frame


def accuracy_by_length(n_tokens: np.ndarray, y: np.ndarray, probas: dict[str, np.ndarray], groups: int) -> pd.DataFrame:
    """Accuracy per group of test documents of about equal size, by token count (shortest first)."""
    group = pd.qcut(pd.Series(n_tokens).rank(method="first"), min(groups, len(n_tokens)), labels=False).to_numpy()
    rows = []
    for g in np.unique(group):
        mask = group == g
        rows.append(
            {
                "tokens": f"{n_tokens[mask].min()}-{n_tokens[mask].max()}",
                "max_tokens": int(n_tokens[mask].max()),
                "documents": int(mask.sum()),
                **{m: float(np.mean(decide(proba[mask]) == y[mask])) for m, proba in probas.items()},
            }
        )
    return pd.DataFrame(rows)


def accuracy_by_stars(stars: pd.Series, y: np.ndarray, probas: dict[str, np.ndarray]) -> pd.DataFrame:
    """aclimdb: accuracy per star rating (reviews near the middle of the scale are the hard ones)."""
    rows = []
    for value in sorted(stars.dropna().unique()):
        mask = (stars == value).to_numpy()
        rows.append(
            {
                "stars": int(value),
                "documents": int(mask.sum()),
                **{m: float(np.mean(decide(proba[mask]) == y[mask])) for m, proba in probas.items()},
            }
        )
    return pd.DataFrame(rows)


def noise_floor_table(floor: dict, metrics: dict, models: list[str]) -> pd.DataFrame:
    rows = [
        {
            "predictor": "oracle: knows every clean label (best possible)",
            "accuracy": floor["oracle_accuracy"],
            "expected accuracy": floor["best_accuracy"],
            "log_loss": floor["best_log_loss"],
        }
    ]
    rows += [{"predictor": m, "accuracy": metrics[m]["accuracy"], "log_loss": metrics[m]["log_loss"]} for m in models]
    return pd.DataFrame(rows)


def _profile_table(profile: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"fact": key.replace("_", " "), "value": ", ".join(f"{k}: {v}" for k, v in value.items())}
            for key, value in profile.items()
        ]
    )


def _notes(
    p: SentimentParams,
    metrics: dict,
    models: list[str],
    history: dict,
    floor: dict | None,
    profile: dict,
    explained: str,
) -> list[str]:
    docs = profile["documents"]
    best = max(models, key=lambda m: metrics[m]["accuracy"])
    notes = [
        f"Every model is fitted on the same {docs.get('train', 0)} training documents and scored on the same "
        f"{docs.get('test', 0)} test documents; {docs.get('val', 0)} validation documents (a seeded, stratified slice of "
        "train unless the source has one) stop the torch model early. The n-gram vocabulary comes from the training "
        f"documents only ({', '.join(f'{v} {k}' for k, v in profile['vocabulary'].items())}). fit_seconds: training; "
        "predict_seconds: scoring the test documents.",
        f"Best accuracy: {best} ({metrics[best]['accuracy']:.4f}).",
        f"Explanations (top n-grams figure, confident mistakes) use {explained}'s n-gram weights: a weight is what "
        "the n-gram's presence adds to the log-odds of the positive class.",
    ]
    if ENSEMBLE in metrics:
        notes.append(f"ensemble: the mean probability of {', '.join(p.train.ensemble)}.")
    if history:
        vectors = history.get("word_vectors")
        notes.append(
            f"{TORCH_MODEL}: best epoch {history['best_epoch']} of {len(history['epochs'])} on {history['device']}"
            f"{' (stopped early)' if history['stopped_early'] else ''}"
            + (
                f"; {vectors['found']} of {vectors['words']} words initialised from {p.train.word_vectors}."
                if vectors
                else "."
            )
        )
    if floor:
        notes.append(
            f"Synthetic data: {floor['noise_rate']:.0%} of the labels were flipped at random, so the best "
            f"achievable accuracy is {floor['best_accuracy']:.4f} (an oracle that knows every clean label scores "
            f"{floor['oracle_accuracy']:.4f} on this test split) and the best log-loss {floor['best_log_loss']:.4f}: "
            "the noise floor."
        )
    return notes


# --- figures ---------------------------------------------------------------------------------


def _comparison_figure(metrics: dict, models: list[str], floor: dict | None) -> Figure:
    fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(11, 3.5))
    accuracy = [metrics[m]["accuracy"] for m in models]
    ax_acc.barh(models, accuracy, color="C0")
    low = min(accuracy)
    if floor:
        ax_acc.axvline(floor["oracle_accuracy"], ls="--", color="grey", label="noise floor (oracle)")
        ax_acc.legend(loc="lower right", fontsize=8)
    top = max(max(accuracy), floor["oracle_accuracy"] if floor else 0)
    ax_acc.set(xlabel="test accuracy", title="Accuracy", xlim=(max(0.0, low - 0.05), min(1.0, top + 0.02)))
    for i, value in enumerate(accuracy):
        ax_acc.text(value, i, f" {value:.4f}", va="center", fontsize=8)
    ax_time.barh(models, [metrics[m]["fit_seconds"] for m in models], color="C2", label="fit")
    ax_time.barh(
        models, [metrics[m]["predict_seconds"] for m in models], color="C1", label="predict (test)", height=0.4
    )
    ax_time.set(xlabel="seconds (log)", xscale="log", title="Time")
    ax_time.legend(fontsize=8)
    fig.tight_layout()
    return Figure("Model comparison", fig, "Test accuracy and wall-clock seconds of every model on the same split.")


def _length_figure(by_length: pd.DataFrame, models: list[str]) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{t}\n({n} docs)" for t, n in zip(by_length["tokens"], by_length["documents"])]
    for m in models:
        ax.plot(labels, by_length[m], marker="o", label=m)
    ax.set(xlabel="tokens per document", ylabel="accuracy", title="Accuracy by document length")
    ax.legend(fontsize=8)
    return Figure("Accuracy by document length", fig, "Test documents in groups of about equal size, shortest first.")


def _ngram_figure(weights: np.ndarray, vocabulary: pd.DataFrame, classes: list[str], model: str, k: int) -> Figure:
    names = vocabulary["ngram"].to_numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, max(3.0, 0.28 * k + 1)))
    for ax, sign, label, colour in ((axes[0], -1, classes[0], "C3"), (axes[1], 1, classes[1], "C0")):
        best = strongest(weights, vocabulary, sign, k)[::-1]
        ax.barh([names[i] for i in best], weights[best], color=colour)
        ax.set(title=f"towards '{label}'", xlabel=f"{model} weight (log-odds of '{classes[1]}')")
    fig.tight_layout()
    return Figure(
        f"Top n-grams ({model})", fig, "The n-grams whose presence pushes a document most towards each class."
    )
