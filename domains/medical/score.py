"""Score new medical images with a trained model: class and probability per image, Grad-CAM on request.

Inputs: an image folder (flat: no labels; or <class>/<image>: labelled, for a shadow evaluation)
or a MedMNIST .npz (test_images, test_labels optional; else every <name>_images array). Images go
through the training gate's per-image checks, must have a size and channel count the training
images had, and are resized to the model's input size exactly as `prepare` did. The predicted
class is the most probable one (MedMNIST's protocol: 0.5 for two classes); the threshold the
report chooses on validation is a report figure, not saved with the model.

Drift: besides size and intensity, each image's `embedding_distance`: how far the CNN's penultimate
features (what its head sees) lie from the training split's (image_scoring.save_embeddings). The CNN
embeds whichever model scores: the baselines' pixel features have no embedding of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch

from domains.common.classification import classification_metrics
from domains.common.contract import Reference, Scored, ScoreOptions
from domains.common.errors import DataError
from domains.common.image_scoring import (
    ROOT,
    ShadowCarry,
    check_as_trained,
    drift_frame,
    embedding_distances,
    model_channels,
    model_inputs,
    read_folder_chunks,
    save_embeddings,
    write_maps,
)
from domains.common.items import ID, LABEL
from domains.common.trainer import select_device
from domains.common.vision import ResNet
from domains.medical.loaders import read_medmnist_batch
from domains.medical.params import MedicalParams
from domains.medical.pipeline import load_prepared
from domains.medical.train import (
    CNN,
    MODELS,
    baseline_features,
    cnn_embeddings,
    cnn_outputs,
    load_cnn,
    model_file,
    score_all,
)

LAYOUTS = "a flat folder of images, or <class>/<image>; a MedMNIST .npz with --source medmnist"


def read_batch(p: MedicalParams, path: Path, source: str) -> pd.DataFrame:
    """The per-image facts of the batch (label when the input names classes)."""
    return next(read_chunks(p, path, source, 0))


def read_chunks(p: MedicalParams, path: Path, source: str, rows: int) -> Iterator[pd.DataFrame]:
    """read_batch in pieces of at most `rows` images (0: whole) for a folder, decoded a piece at a time; a
    MedMNIST .npz holds each split as one array, which numpy loads whole: it is one piece."""
    if source == "medmnist":
        if path.is_dir():
            raise DataError(f"{path}: a folder, not an .npz; score an image folder with --source image-folder")
        yield read_medmnist_batch(path, p.data.classes).assign(**{ROOT: str(path.resolve())})
        return
    if path.is_file():
        raise DataError(f"{path}: a file, not a folder of images; score a MedMNIST .npz with --source medmnist")
    yield from read_folder_chunks(path, LAYOUTS, p.prepare.image_size, rows)


def _score_of(proba: np.ndarray) -> np.ndarray:
    """The one number per image that score drift follows: P(second class) for two classes, else the top probability."""
    return proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)


def reference(p: MedicalParams, prepared_dir: Path, train_dir: Path) -> Reference:
    """The training split's facts (at the prepared size: native sizes are not kept by prepare), the CNN's
    embeddings of it (saved with the model) and each model's scores on the test split."""
    images, items, _ = load_prepared(prepared_dir)
    train = images[(items["split"] == "train").to_numpy()]
    size = images.shape[-1]
    cnn = load_cnn(model_file(train_dir, CNN)).to(select_device(p.train.device))
    distance = save_embeddings(train_dir, CNN, cnn_embeddings(cnn, torch.from_numpy(train)), p.seed)
    frame = drift_frame(np.full(len(train), size), np.full(len(train), size), train, distance)
    probas, _ = score_all(p, train_dir, images[(items["split"] == "test").to_numpy()])
    return Reference(frame, {name: _score_of(proba) for name, proba in probas.items()})


def score_batch(p: MedicalParams, model_dir: Path, model: str, table: pd.DataFrame, options: ScoreOptions) -> Scored:
    if model not in MODELS:
        raise DataError(f"medical: unknown model '{model}'; trained: {', '.join(MODELS)}")
    check_as_trained(model_dir, table, "medical")
    images = model_inputs(table, p.prepare.image_size, model_channels(model_dir))
    classes = p.data.classes
    # weights only, after the hash check; the CNN also embeds for drift, whichever model scores
    cnn: ResNet | None = None
    embedded: np.ndarray | None = None
    if options.predict is not None:  # another runtime of the model (the endpoint's ONNX): P(second class)
        positive = options.predict(model, images)
        proba = np.stack([1 - positive, positive], axis=1)
    elif model == CNN:  # one pass gives both
        cnn = load_cnn(model_file(model_dir, CNN)).to(select_device(p.train.device))
        proba, embedded = cnn_outputs(cnn, torch.from_numpy(images), p.train.tta)
    else:
        proba = joblib.load(model_file(model_dir, model)).predict_proba(
            baseline_features(images, p.train.baseline_size)
        )
    if options.drift and embedded is None:  # the endpoint judges no drift: no embedding pass there
        cnn = cnn or load_cnn(model_file(model_dir, CNN)).to(select_device(p.train.device))
        embedded = cnn_embeddings(cnn, torch.from_numpy(images))
    predicted = proba.argmax(axis=1)
    predictions = pd.DataFrame(
        {
            ID: table[ID].to_numpy(),
            "class": np.asarray(classes)[predicted],
            "probability": proba[np.arange(len(proba)), predicted],
            **{f"p_{name}": proba[:, i] for i, name in enumerate(classes)},
        },
        index=table.index,
    )
    labelled = LABEL in table and table[LABEL].notna().all()
    if labelled:
        predictions["label"] = table[LABEL].astype(str).to_numpy()
    notes = [
        f"class: the most probable of {', '.join(classes)} ({model}); images resized to "
        f"{p.prepare.image_size} px as in training"
    ]
    if options.explain:
        notes.append(_explain(cnn if model == CNN else None, images, predicted, table[ID].tolist(), options.maps_dir))
    y = table[LABEL].map({c: i for i, c in enumerate(classes)}).to_numpy() if labelled else np.zeros(0, np.int8)
    carry = ShadowCarry.after(options.carry, labelled, y, proba)
    shadow = _shadow(carry.labels, carry.scores) if carry.labelled else None
    distance = (
        embedding_distances(model_dir, embedded)
        if options.drift and embedded is not None
        else np.full(len(images), np.nan)  # no drift judged (the endpoint): no distances
    )
    drift = drift_frame(table["height"].to_numpy(), table["width"].to_numpy(), images, distance)
    return Scored(predictions, drift, _score_of(proba), shadow, notes, carry if options.chunked else None)


def _explain(
    cnn: ResNet | None, images: np.ndarray, predicted: np.ndarray, ids: list[str], maps_dir: Path | None
) -> str:
    """A Grad-CAM PNG per image (the predicted class's evidence over the image), in batches."""
    if cnn is None or maps_dir is None:
        return "Grad-CAM: needs the cnn model (--model); no maps written"
    from domains.medical.saliency import grad_cam

    cnn = cnn.cpu()
    for start in range(0, len(images), 256):
        chunk = slice(start, start + 256)
        write_maps(maps_dir, ids[chunk], images[chunk], grad_cam(cnn, images[chunk], predicted[chunk]))
    return f"Grad-CAM: {len(images)} map(s) of the predicted class in {maps_dir.name}/"


def _shadow(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """The model on the batch's own labels: accuracy at the most probable class, AUROC where both classes occur."""
    metrics = classification_metrics(y, proba)
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and np.isnan(v))} | {"labelled": len(y)}
