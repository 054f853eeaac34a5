"""Defect fixtures: small params for fast real runs, MVTec and Magnetic-Tile folders written here."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from domains.defects.params import SyntheticParams
from domains.defects.synthetic import write_mvtec
from tests.conftest import ROOT, project_root


def small_defects_params() -> dict:
    """The defects section at a size that runs end to end in seconds."""
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text())["defects"])
    params["synthetic"].update(image_size=48, n_train=36, n_test_good=6, n_test_per_type=3)
    params["data"].update(val_fraction=0.15)
    params["gate"].update(min_train_good=10)
    params["prepare"].update(image_size=48)
    params["train"].update(epochs=2, width=4, num_threads=1, baseline_patches_per_image=40, baseline_components=6)
    params["evaluate"].update(thresholds_min={"image_auroc": 0.0}, baselines=[], overlays=2)
    return params


def with_draem(params: dict, category: str) -> dict:
    """The small params with DRAEM at a tiny size among the models, on the `category` synthetic category."""
    params["synthetic"].update(category=category)
    params["train"].update(models=["patch_gaussian", "segmenter", "draem"], draem_width=4, draem_size=32)
    # every path the segmenter's maps take (report, export, scoring), with all their views
    params["train"].update(flip_average=True, shift_average=True)
    if category in ("part", "both"):  # what the README advises for parts at any pose (align: auto, the default)
        params["train"].update(foreground=True)
    return params


def write_small_mvtec(
    root: Path, seed: int = 1, size: int = 48, channels: int = 1, types=("crack", "missing"), category: str = "surface"
) -> Path:
    """A small MVTec category folder (the synthetic generator's layout): 20 train, 4 good and 2 x 2 defective tests."""
    params = SyntheticParams(
        image_size=size,
        channels=channels,
        n_train=20,
        n_test_good=4,
        n_test_per_type=2,
        defect_types=list(types),
        category=category,
    )
    return write_mvtec(params, seed, root)


def write_small_magnetic_tile(
    root: Path, seed: int = 2, free: int = 20, per_type: int = 2, train_share: float = 0.8
) -> Path:
    """A small Magnetic-Tile release: MT_<class>/Imgs/<stem>.jpg + <stem>.png, crops of varying size,
    anti-aliased masks (values between 0 and 255 on the edges), empty masks for MT_Free; and the
    published split's `differnet_train_filenames.txt` naming the first `train_share` of MT_Free in
    shuffled order (as DifferNet's list is)."""
    rng = np.random.default_rng(seed)
    for cls, count in (("MT_Free", free), ("MT_Crack", per_type), ("MT_Blowhole", per_type)):
        folder = root / cls / "Imgs"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            height, width = int(rng.integers(40, 60)), int(rng.integers(30, 70))
            image = np.clip(rng.normal(110, 20, (height, width)), 0, 255).astype(np.uint8)
            mask = np.zeros((height, width), dtype=np.uint8)
            if cls != "MT_Free":
                mask[10:20, 8:14] = 255
                mask[9, 8:14] = 90  # the anti-aliased edge the published masks have
                image[10:20, 8:14] = 20
            stem = f"exp{i % 3}_num_{1000 + i}"
            Image.fromarray(image, "L").save(folder / f"{stem}.jpg", quality=95)
            Image.fromarray(mask, "L").save(folder / f"{stem}.png")
    names = [f"exp{i % 3}_num_{1000 + i}.jpg" for i in rng.permutation(free)[: round(train_share * free)]]
    (root / "differnet_train_filenames.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Models in these tests are tiny: on a busy machine a second thread costs more than it gives."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def defects_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A defects project root for in-process stage runs (see tests.conftest.project_root)."""
    return project_root(tmp_path, monkeypatch, "defects", small_defects_params())
