"""Medical fixtures: small params for fast real runs, MedMNIST-format files and image folders."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from domains.medical.params import SyntheticParams
from domains.medical.synthetic import generate_images
from tests.conftest import ROOT, project_root


def small_medical_params() -> dict:
    """The medical section at a size that runs end to end in seconds."""
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text())["medical"])
    params["synthetic"].update(image_size=16, n_train=160, n_val=40, n_test=60)
    params["data"].update(val_fraction=0.25)
    params["gate"].update(min_per_class=3)
    params["prepare"].update(image_size=16)
    params["train"].update(epochs=2, batch_size=32, widths=[8, 16], blocks=[1, 1], hgb_max_iter=10, num_threads=1)
    params["evaluate"].update(thresholds_min={"auroc": 0.5}, baselines=[], n_examples=4)
    return params


def synthetic_arrays(seed: int = 1, size: int = 16) -> dict[str, np.ndarray]:
    """A small MedMNIST-layout dict of arrays: <split>_images (N, H, W) uint8, <split>_labels (N, 1)."""
    images = generate_images(SyntheticParams(image_size=size, n_train=60, n_val=20, n_test=30, label_noise=0), seed)
    arrays = {}
    for split, (x, y) in images.splits.items():
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def write_image_folder(
    root: Path, arrays: dict[str, np.ndarray], classes=("normal", "pneumonia"), splits=("train", "test")
) -> Path:
    """<split>/<class>/<index>.png from MedMNIST-layout arrays."""
    for split in splits:
        for i, (image, label) in enumerate(zip(arrays[f"{split}_images"], arrays[f"{split}_labels"][:, 0])):
            folder = root / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    return root


@pytest.fixture
def medical_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A medical project root for in-process stage runs (see tests.conftest.project_root)."""
    return project_root(tmp_path, monkeypatch, "medical", small_medical_params())
