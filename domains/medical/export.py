"""Medical models as ONNX: the CNN through torch.onnx.export (uint8 pixels in, its standardisation and,
when trained with it, the mirrored test-time augmentation inside the graph), the pixel baselines
through skl2onnx (area-averaged pixels in). int8 for the CNN is static QDQ calibrated on training
images: dynamic quantization would turn its convolutions into ConvInteger, which onnxruntime's CPU
provider cannot run (onnxruntime #12558). Two classes: P(second class) >= 0.5 decides, as argmax."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import joblib
import numpy as np
import torch

from domains.common.errors import PipelineError
from domains.common.export import Convertible, Exportable, from_sklearn, from_torch, image_layout
from domains.medical.params import MedicalParams
from domains.medical.pipeline import load_prepared
from domains.medical.train import CNN, HGB, LOGREG, baseline_features, load_cnn, model_file, predict_proba

CALIBRATION_IMAGES = 256  # training images the int8 CNN's activation ranges are measured on


class _Probabilities(torch.nn.Module):
    """Class probabilities as predict_proba computes them: softmax, averaged with the mirror under `tta`."""

    def __init__(self, cnn: torch.nn.Module, tta: bool):
        super().__init__()
        self.cnn, self.tta = cnn, tta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.tta:
            return torch.softmax(self.cnn(x).float(), dim=1)
        # The image and its mirror in one batch: one CNN in the graph (two calls would give int8's
        # pre-processing two copies of every folded weight).
        both = torch.softmax(self.cnn(torch.cat([x, x.flip(3)])).float(), dim=1)
        return (both[: x.shape[0]] + both[x.shape[0] :]) / 2


def export_models(p: MedicalParams, model_dir: Path, prepared_dir: Path) -> Exportable:
    images, items, classes = load_prepared(prepared_dir)
    if len(classes) != 2:
        raise PipelineError(
            f"medical: export decides between two classes; this model has {len(classes)} ({', '.join(classes)})"
        )
    split = items["split"].to_numpy()
    test, train = images[split == "test"], images[split == "train"]
    size = p.train.baseline_size
    pixels = {"x": baseline_features(test, size).astype(np.float32)}
    models = []
    for name, kind in ((LOGREG, "linear"), (HGB, "tree")):
        estimator = joblib.load(model_file(model_dir, name))  # opened after modelstore checked its hash
        models.append(
            Convertible(
                name,
                kind,
                partial(from_sklearn, estimator, pixels["x"].shape[1]),
                pixels,
                estimator.predict_proba(pixels["x"])[:, 1],
                "probabilities",
                column=1,
            )
        )
    cnn = load_cnn(model_file(model_dir, CNN))
    reference = predict_proba(cnn, torch.from_numpy(test), p.train.tta)[:, 1]  # as evaluate and scoring compute it
    graph = _Probabilities(cnn, p.train.tta).eval()
    example = (torch.from_numpy(test[:2]),)
    calibration = train[np.random.default_rng(p.seed).permutation(len(train))[:CALIBRATION_IMAGES]]
    models.append(
        Convertible(
            CNN,
            "torch",
            lambda: from_torch(graph, example, ["x"], ["probabilities"], {"x": {0: "items"}}),
            {"x": test},
            reference,
            "probabilities",
            column=1,
            quantize="static",
            calibration={"x": calibration},
        )
    )
    channels, side = images.shape[1], images.shape[-1]
    preprocessing = {
        "image": image_layout(side, channels),
        "models": {
            CNN: {
                "input": f"x: uint8 [items, {channels}, {side}, {side}], raw pixels 0-255; the graph scales them to "
                "[0, 1] and standardises with the training images' mean and std (held in the graph)"
                + ("; it averages the image with its left-right mirror (tta)" if p.train.tta else "")
            },
            LOGREG: {
                "input": f"x: float32 [items, {channels * size * size}]: pixels / 255, area-averaged to "
                f"{size} x {size} (adaptive average pooling), flattened channel-major (C, H, W)"
            },
            HGB: {"input": f"the same as {LOGREG}"},
        },
        "output": "'probabilities' [items, 2]: column 1 is P(" + classes[1] + ")",
        "decision": f"'{classes[1]}' when P({classes[1]}) >= 0.5, else '{classes[0]}' (the most probable class)",
    }
    return Exportable(
        models=models,
        labels=items["y"].to_numpy()[split == "test"],
        threshold=0.5,
        class_names=list(classes),
        metric="auroc",
        preprocessing=preprocessing,
    )
