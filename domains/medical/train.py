"""Medical imaging models: a ResNet-style CNN trained from scratch, and scikit-learn baselines on
downsampled pixels. Every model returns class probabilities (n, k) for the same images."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import joblib
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from domains.common.classification import auroc
from domains.common.contract import TrainEnv
from domains.common.trainer import History, fit, seed_everything, select_device
from domains.common.vision import (
    ResNet,
    augment_images,
    pooled,
    recalibrate_batchnorm,
    set_input_statistics,
    small_resnet,
)
from domains.medical.params import MedicalParams, MedicalTrainParams
from domains.medical.pipeline import load_prepared

CNN, LOGREG, HGB = "cnn", "logreg", "hgb"
MODELS = (LOGREG, HGB, CNN)
HISTORY = "history.json"
TIMES = "times.json"  # model -> fit_seconds


def model_file(train_dir: Path, name: str) -> Path:
    return train_dir / (f"{name}.pt" if name == CNN else f"{name}.joblib")


def baseline_features(images: np.ndarray, size: int) -> np.ndarray:
    """Pixels averaged down to size x size (area averaging), flattened, in [0, 1]."""
    x = torch.from_numpy(images).float() / 255.0
    if x.shape[-1] != size:
        x = F.adaptive_avg_pool2d(x, size)
    return x.flatten(1).numpy()


def train_models(p: MedicalParams, prepared_dir: Path, out_dir: Path, env: TrainEnv) -> None:
    images, items, classes = load_prepared(prepared_dir)
    train, val = (items["split"] == "train").to_numpy(), (items["split"] == "val").to_numpy()
    y = items["y"].to_numpy()
    t = p.train
    seed_everything(p.seed, t.deterministic, t.num_threads)
    times = {}

    features = baseline_features(images[train], t.baseline_size)
    logreg = make_pipeline(StandardScaler(), LogisticRegression(C=t.logreg_c, max_iter=2000))
    times[LOGREG] = _timed_fit(lambda: logreg.fit(features, y[train]))
    joblib.dump(logreg, model_file(out_dir, LOGREG))
    hgb = HistGradientBoostingClassifier(max_iter=t.hgb_max_iter, early_stopping=False, random_state=p.seed)
    times[HGB] = _timed_fit(lambda: hgb.fit(features, y[train]))
    joblib.dump(hgb, model_file(out_dir, HGB))

    began = time.perf_counter()
    model, history = train_cnn(t, p.seed, images[train], y[train], images[val], y[val], len(classes), env)
    times[CNN] = time.perf_counter() - began
    save_cnn(model, t, len(classes), model_file(out_dir, CNN))
    (out_dir / HISTORY).write_text(json.dumps(history.to_json(), indent=2))
    (out_dir / TIMES).write_text(json.dumps({name: {"fit_seconds": s} for name, s in times.items()}, indent=2))


def build_cnn(channels: int, n_classes: int, t: MedicalTrainParams) -> ResNet:
    return small_resnet(channels, n_classes, t.widths, t.blocks, t.dropout)


def train_cnn(
    t: MedicalTrainParams,
    seed: int,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    env: TrainEnv,
) -> tuple[ResNet, History]:
    torch.manual_seed(seed)  # same initial weights for the same seed
    model = build_cnn(x_train.shape[1], n_classes, t)
    images = torch.from_numpy(x_train)
    set_input_statistics(model, images)
    counts = np.bincount(y_train, minlength=n_classes).astype(np.float32)
    weight = torch.from_numpy(counts.sum() / (n_classes * np.maximum(counts, 1))) if t.class_weighted else None
    val_images = torch.from_numpy(x_val)

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = weight.to(logits.device) if weight is not None else None
        return F.cross_entropy(logits.float(), target, weight=w, label_smoothing=t.label_smoothing)

    def val_auc(m: torch.nn.Module) -> float:
        score = auroc(y_val, predict_proba(cast(ResNet, m), val_images, tta=False))
        return 0.0 if np.isnan(score) else score

    def augment(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x, target = batch
        return augment_images(x, t.augment), target

    history = fit(
        model,
        (images, torch.from_numpy(y_train)),
        loss_fn,
        val_auc,
        t,
        seed,
        env.checkpoint_dir / "cnn.ckpt",
        env.fingerprint,
        name="medical-cnn",
        augment=augment,
        channels_last=True,
    )
    recalibrate_batchnorm(model, images)
    return model, history


@torch.no_grad()
def cnn_outputs(model: ResNet, images: torch.Tensor, tta: bool, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (with `tta`, the mean over the image and its left-right mirror) and (N, D)
    penultimate features (what the head sees: the drift check's embedding) of uint8 images, from one pass."""
    model.eval()
    device = next(model.parameters()).device
    probas, embedded = [], []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        last = model.features(x)[-1]
        proba = torch.softmax(model.head(last).float(), dim=1)
        if tta:
            proba = (proba + torch.softmax(model(x.flip(3)).float(), dim=1)) / 2
        probas.append(proba.cpu())
        embedded.append(pooled(last, "mean"))
    if not probas:
        return np.empty((0, 0)), np.empty((0, int(model.fc.in_features)), dtype=np.float32)
    return torch.cat(probas).numpy().astype(np.float64), np.concatenate(embedded)


def predict_proba(model: ResNet, images: torch.Tensor, tta: bool, batch_size: int = 512) -> np.ndarray:
    """Class probabilities; with `tta`, the mean over the image and its left-right mirror."""
    return cnn_outputs(model, images, tta, batch_size)[0]


def cnn_embeddings(model: ResNet, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """(N, D) penultimate features of uint8 images: what the CNN's head sees (the drift check's embedding)."""
    return cnn_outputs(model, images, False, batch_size)[1]


def save_cnn(model: ResNet, t: MedicalTrainParams, n_classes: int, file: Path) -> None:
    torch.save(
        {
            "state_dict": model.cpu().state_dict(),
            "channels": int(model.mean.shape[1]),
            "n_classes": n_classes,
            "widths": t.widths,
            "blocks": t.blocks,
            "dropout": t.dropout,
        },
        file,
    )


def load_cnn(file: Path) -> ResNet:
    saved = torch.load(file, map_location="cpu", weights_only=True)  # tensors and plain values only: no code runs
    model = small_resnet(saved["channels"], saved["n_classes"], saved["widths"], saved["blocks"], saved["dropout"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def score_all(p: MedicalParams, train_dir: Path, images: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Probabilities (n, k) of every model on `images`, and each model's predict seconds."""
    probas, seconds = {}, {}
    for name in (LOGREG, HGB):
        began = time.perf_counter()
        model = joblib.load(model_file(train_dir, name))
        probas[name] = model.predict_proba(baseline_features(images, p.train.baseline_size))
        seconds[name] = time.perf_counter() - began
    began = time.perf_counter()
    cnn = load_cnn(model_file(train_dir, CNN)).to(select_device(p.train.device))
    probas[CNN] = predict_proba(cnn, torch.from_numpy(images), p.train.tta)
    seconds[CNN] = time.perf_counter() - began
    return probas, seconds


def _timed_fit(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    seconds = time.perf_counter() - began
    print(f"[medical] fitted in {seconds:.1f} s", file=sys.stderr, flush=True)
    return seconds
