"""Medical models and evaluation: baselines' features, Grad-CAM, the synthetic signal, and a
multi-class RGB MedMNIST file through every stage in-process."""

import json

import numpy as np
import torch

from aiflow.cli import main
from domains.common.classification import auroc
from domains.common.vision import small_resnet
from domains.medical.params import SyntheticParams
from domains.medical.saliency import grad_cam
from domains.medical.synthetic import generate_images
from domains.medical.train import baseline_features
from tests.conftest import write_params
from tests.medical.conftest import small_medical_params, write_npz


def test_baseline_features_average_down_to_the_size():
    images = np.arange(2 * 16 * 16, dtype=np.uint8).reshape(2, 1, 16, 16)
    features = baseline_features(images, 4)
    assert features.shape == (2, 16) and 0 <= features.min() and features.max() <= 1


def test_grad_cam_maps_are_at_image_resolution_in_unit_range():
    torch.manual_seed(0)
    model = small_resnet(1, 2, (8, 16), (1, 1))
    images = np.random.default_rng(0).integers(0, 255, (3, 1, 20, 20)).astype(np.uint8)
    cams = grad_cam(model, images, np.array([0, 1, 1]))
    assert cams.shape == (3, 20, 20) and cams.min() >= 0 and cams.max() <= 1 + 1e-6


def test_synthetic_signal_is_there_and_label_noise_is_as_asked():
    data = generate_images(SyntheticParams(image_size=24, n_train=400, n_val=10, n_test=10, label_noise=0.1), seed=3)
    truth = data.truth[data.truth["split"] == "train"]
    labels = data.splits["train"][1][:, 0]
    assert abs(truth["flipped"].mean() - 0.1) < 0.04
    clean = ~truth["flipped"].to_numpy()
    assert (
        auroc(labels[clean], np.stack([-truth["opacity"], truth["opacity"]], 1)[clean]) == 1.0
    )  # the latent separates
    again = generate_images(SyntheticParams(image_size=24, n_train=400, n_val=10, n_test=10, label_noise=0.1), seed=3)
    assert np.array_equal(again.splits["train"][0], data.splits["train"][0])


def test_multiclass_rgb_runs_every_stage(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 90), ("val", 30), ("test", 30)):
        y = np.arange(n) % 3
        x = rng.integers(0, 120, (n, 20, 20, 3)).astype(np.uint8)
        for c in range(3):
            x[y == c, :, :, c] += 100  # the class is the dominant colour
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y[:, None]
    params = small_medical_params()
    params["data"] = {
        **params["data"],
        "source": "medmnist",
        "path": str(write_npz(tmp_path / "blood.npz", arrays)),
        "classes": ["red", "green", "blue"],
    }
    params["gate"].update(class_share_min=0.1)
    (tmp_path / "registry").mkdir()
    write_params(tmp_path, "medical", params)
    monkeypatch.setenv("AIFLOW_ROOT", str(tmp_path))
    for stage in ("acquire", "validate", "prepare", "train", "evaluate", "report"):
        assert main(["stage", stage, "medical"]) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "data/medical/evaluate/metrics.json").read_text())
    assert set(metrics) == {"logreg", "hgb", "cnn"} and "threshold" not in metrics["cnn"]  # argmax, no threshold
    assert metrics["logreg"]["auroc"] > 0.95
    assert "Confusion matrix" in (tmp_path / "data/medical/report/report.html").read_text()
