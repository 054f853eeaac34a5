"""Score every medical model on the test split: metrics at 0.5 (MedMNIST's protocol) and at the
threshold chosen on validation, ROC, reliability, confusion matrix, example images and saliency."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from domains.common.classification import auroc, classification_metrics, decide, roc_rows, youden_threshold
from domains.common.contract import Evaluation, Figure
from domains.common.figures import confusion_figure, reliability_figure, roc_figure, training_curve_figure
from domains.medical.params import MedicalParams
from domains.medical.pipeline import TRUTH, load_prepared
from domains.medical.saliency import grad_cam
from domains.medical.train import CNN, HISTORY, TIMES, load_cnn, model_file, score_all

AT_THRESHOLD = ("accuracy", "sensitivity", "specificity", "f1")  # binary: also reported at the chosen threshold


def evaluate_models(p: MedicalParams, prepared_dir: Path, train_dir: Path, out_dir: Path) -> Evaluation:
    images, items, classes = load_prepared(prepared_dir)
    test, val = (items["split"] == "test").to_numpy(), (items["split"] == "val").to_numpy()
    y_test, y_val = items.loc[test, "y"].to_numpy(), items.loc[val, "y"].to_numpy()
    probas, predict_seconds = score_all(p, train_dir, images[test])
    val_probas, _ = score_all(p, train_dir, images[val])
    times = json.loads((train_dir / TIMES).read_text())
    binary = len(classes) == 2

    metrics, thresholds = {}, {}
    for name, proba in probas.items():
        metrics[name] = classification_metrics(y_test, proba)
        if binary:  # the operating point is chosen on validation, never on test
            thresholds[name] = youden_threshold(y_val, val_probas[name][:, 1])
            at = classification_metrics(y_test, proba, thresholds[name])
            metrics[name].update({f"{m}_at_threshold": at[m] for m in AT_THRESHOLD}, threshold=thresholds[name])
        metrics[name]["fit_seconds"] = times[name]["fit_seconds"]
        metrics[name]["predict_seconds"] = predict_seconds[name]

    candidate = p.evaluate.candidate
    threshold = thresholds.get(candidate, 0.5)
    history = json.loads((train_dir / HISTORY).read_text())
    figures = [
        roc_figure(y_test, probas),
        reliability_figure(y_test, probas),
        confusion_figure(
            y_test,
            decide(probas[candidate], threshold),
            classes,
            f"{candidate}" + (f" at threshold {threshold:.3f}" if binary else ""),
            "Threshold chosen on the validation split (Youden's J)."
            if binary
            else "Predicted class: the most probable.",
        ),
        training_curve_figure(history, "val AUC", "CNN"),
    ]
    if p.evaluate.example_images:
        figures += example_figures(p, train_dir, images[test], y_test, probas[candidate], classes, threshold)
    tables = {"split_counts": split_counts(items, classes)}
    truth = prepared_dir / TRUTH
    if truth.is_file():
        tables["achievable"] = achievable(pd.read_parquet(truth), items, metrics)
    notes = _notes(p, items, classes, history, thresholds)
    plots = {
        "roc_curve": roc_rows(y_test, probas),
        "model_auroc": pd.DataFrame({"model": list(metrics), "auroc": [metrics[m]["auroc"] for m in metrics]}),
    }
    return Evaluation(
        metrics=metrics,
        plots=plots,
        figures=figures,
        tables=tables,
        notes=notes,
        units=test_units(items[test], images[test], probas, classes),
    )


def test_units(
    items: pd.DataFrame, images: np.ndarray, probas: dict[str, np.ndarray], classes: list[str]
) -> pd.DataFrame:
    """Per-image predictions (the image is the bootstrap unit), with its class, brightness and contrast."""
    ids = items["item_id"].astype(str).to_numpy()
    frame = pd.DataFrame({"row": ids, "unit": ids, "label": items["y"].to_numpy(np.int64)})
    for name, proba in probas.items():
        if proba.shape[1] == 2:
            frame[f"{name}:p1"] = proba[:, 1]
        else:
            for k in range(proba.shape[1]):
                frame[f"{name}:p{k}"] = proba[:, k]
    pixels = images.reshape(len(images), -1).astype(np.float64)  # the prepared uint8 image, every channel: 0-255
    frame["slice:class"] = np.asarray(classes, dtype=object)[frame["label"].to_numpy()]
    frame["slice:brightness"] = pixels.mean(axis=1)
    frame["slice:contrast"] = pixels.std(axis=1)
    return frame


def split_counts(items: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    counts = pd.crosstab(items["split"], items["label"]).reindex(columns=classes, fill_value=0)
    return counts.reindex(["train", "val", "test"]).fillna(0).astype(int).reset_index()


def achievable(truth: pd.DataFrame, items: pd.DataFrame, metrics: dict) -> pd.DataFrame:
    """Synthetic data only: the AUC of the known opacity load on the test labels bounds every model's."""
    test = items[items["split"] == "test"].merge(truth, on="item_id")
    oracle = auroc(test["y"].to_numpy(), np.stack([-test["opacity"], test["opacity"]], axis=1))
    rows = [
        {
            "model": "oracle (the generator's opacity load)",
            "auroc": oracle,
            "accuracy": 1 - float(test["flipped"].mean()),
        }
    ]
    rows += [
        {"model": m, "auroc": v["auroc"], "accuracy": v.get("accuracy_at_threshold", v["accuracy"])}
        for m, v in metrics.items()
    ]
    return pd.DataFrame(rows)


def example_figures(
    p: MedicalParams,
    train_dir: Path,
    images: np.ndarray,
    y: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    threshold: float,
) -> list[Figure]:
    """The most confident right and wrong test images, and Grad-CAM maps of the CNN on them."""
    pred = decide(proba, threshold)
    confidence = proba[np.arange(len(y)), pred]
    n = p.evaluate.n_examples
    right = [i for i in np.argsort(-confidence, kind="stable") if pred[i] == y[i]][:n]
    wrong = [i for i in np.argsort(-confidence, kind="stable") if pred[i] != y[i]][:n]
    chosen = right + wrong
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.8), squeeze=False)
    for row, picks in enumerate((right, wrong)):
        for col in range(n):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(picks):
                i = picks[col]
                ax.imshow(_display(images[i]), cmap="gray", vmin=0, vmax=255)
                ax.set_title(
                    f"pred {classes[pred[i]]} {confidence[i]:.2f}\ntrue {classes[y[i]]}",
                    fontsize=7,
                    color="#1a7f37" if pred[i] == y[i] else "#cf222e",
                )
    axes[0][0].text(
        -0.1,
        0.5,
        "most confident right",
        transform=axes[0][0].transAxes,
        rotation=90,
        va="center",
        ha="right",
        fontsize=8,
    )
    axes[1][0].text(
        -0.1,
        0.5,
        "most confident wrong",
        transform=axes[1][0].transAxes,
        rotation=90,
        va="center",
        ha="right",
        fontsize=8,
    )
    figures = [
        Figure(
            "Example test images",
            fig,
            f"Predictions of {p.evaluate.candidate} with the probability of the predicted class.",
        )
    ]

    if p.evaluate.candidate == CNN and chosen:
        cams = grad_cam(load_cnn(model_file(train_dir, CNN)), images[chosen], pred[chosen])
        fig, axes = plt.subplots(2, len(chosen), figsize=(1.6 * len(chosen), 3.6), squeeze=False)
        for col, i in enumerate(chosen):
            for row in range(2):
                axes[row][col].axis("off")
                axes[row][col].imshow(_display(images[i]), cmap="gray", vmin=0, vmax=255)
            axes[1][col].imshow(cams[col], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            axes[0][col].set_title(f"{'right' if pred[i] == y[i] else 'wrong'}: {classes[pred[i]]}", fontsize=7)
        figures.append(
            Figure(
                "Saliency (Grad-CAM)",
                fig,
                "Where the CNN looked for its prediction: image (top), "
                "Grad-CAM of the predicted class over it (bottom), for the images above.",
            )
        )
    return figures


def _display(image: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 -> what imshow takes."""
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)


def _notes(p: MedicalParams, items: pd.DataFrame, classes: list[str], history: dict, thresholds: dict) -> list[str]:
    sizes = items["split"].value_counts()
    notes = [
        f"Images: {sizes.get('train', 0)} train, {sizes.get('val', 0)} validation, {sizes.get('test', 0)} test; "
        f"{len(classes)} classes ({', '.join(classes)}); models see {p.prepare.image_size}x{p.prepare.image_size} px.",
        f"CNN: best epoch {history['best_epoch']} of {len(history['epochs'])} (validation AUC "
        f"{history['best_score']:.4f}) on {history['device']}{' (stopped early)' if history['stopped_early'] else ''}"
        f"{'; test-time augmentation: mean over the image and its mirror' if p.train.tta else ''}.",
    ]
    if thresholds:
        notes.append(
            "accuracy, f1, sensitivity and specificity are at threshold 0.5 (the MedMNIST protocol); the "
            "*_at_threshold columns use each model's threshold chosen on validation (Youden's J): "
            + ", ".join(f"{m} {t:.3f}" for m, t in thresholds.items())
            + "."
        )
    else:
        notes.append(
            "auroc is the one-vs-rest macro average (MedMNIST's protocol); predictions are the most probable class."
        )
    if not p.evaluate.example_images:
        notes.append("Example images and saliency maps are off (evaluate.example_images: false): aggregates only.")
    return notes
