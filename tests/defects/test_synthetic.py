"""The synthetic surfaces and their defects: seeded, in MVTec's layout, masks where the pixels changed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from domains.defects.params import SyntheticParams
from domains.defects.synthetic import defect_mask, inject, inject_on_part, part, surface, write_mvtec
from tests.conftest import digest

KINDS = ["scratch", "spot", "crack", "missing"]


def test_the_dataset_is_written_in_mvtec_layout_and_seeded(tmp_path):
    params = SyntheticParams(category="surface", image_size=32, n_train=3, n_test_good=2, n_test_per_type=2)
    root = write_mvtec(params, 5, tmp_path / "a")
    assert sorted(p.name for p in (root / "test").iterdir()) == sorted(["good", *KINDS])
    assert len(list((root / "train" / "good").glob("*.png"))) == 3
    for kind in KINDS:
        images = sorted(p.stem for p in (root / "test" / kind).glob("*.png"))
        masks = sorted(p.stem for p in (root / "ground_truth" / kind).glob("*.png"))
        assert masks == [f"{stem}_mask" for stem in images]
    assert Image.open(root / "train/good/000.png").mode == "L"
    assert digest(root) == digest(write_mvtec(params, 5, tmp_path / "b"))
    assert digest(root) != digest(write_mvtec(params, 6, tmp_path / "c"))


def test_rgb_surfaces(tmp_path):
    root = write_mvtec(
        SyntheticParams(category="surface", image_size=32, channels=3, n_train=2, n_test_good=1, n_test_per_type=1),
        1,
        tmp_path,
    )
    image = Image.open(root / "test/crack/000.png")
    assert image.mode == "RGB" and image.size == (32, 32)
    assert Image.open(root / "ground_truth/crack/000_mask.png").mode == "L"


@pytest.mark.parametrize("kind", KINDS)
def test_each_defect_changes_the_pixels_its_mask_marks(kind):
    rng = np.random.default_rng(3)
    clean = surface(np.random.default_rng(1), 64, 0.3)
    image, mask = inject(rng, clean, kind, 1.0)
    change = np.abs(image - clean)
    assert 0 < mask.mean() < 0.2
    assert change[mask].mean() > 0.1  # clearly visible inside
    assert change[~mask].mean() < 0.01  # the rest is left as it was (edges blend in)


def test_contrast_scales_the_defects():
    clean = surface(np.random.default_rng(1), 64, 0.3)
    faint, mask = inject(np.random.default_rng(3), clean, "spot", 0.5)
    strong, same = inject(np.random.default_rng(3), clean, "spot", 1.0)
    assert (mask == same).all()
    assert np.abs(faint - clean)[mask].mean() < np.abs(strong - clean)[mask].mean()


def test_surfaces_vary_but_share_their_grain_direction():
    a, b = surface(np.random.default_rng(1), 64, 0.0), surface(np.random.default_rng(2), 64, 0.0)
    assert not np.allclose(a, b) and 0 <= a.min() and a.max() <= 1
    # grain along the x axis: neighbours along a row agree more than along a column
    for s in (a, b):
        assert np.corrcoef(s[:, :-1].ravel(), s[:, 1:].ravel())[0, 1] > np.corrcoef(s[:-1].ravel(), s[1:].ravel())[0, 1]


def test_unknown_defect_type():
    with pytest.raises(ValueError, match="unknown defect type"):
        defect_mask(np.random.default_rng(0), "dent", 32)


def test_parts_vary_in_pose_on_a_dark_background():
    rng = np.random.default_rng(0)
    parts = [part(rng, 64, 0.3, 0.06) for _ in range(6)]
    for image, solid in parts:
        assert 0.15 < solid.mean() < 0.4  # a part, not the whole image
        assert image[solid].mean() > image[~solid].mean() + 0.2  # on a darker background
        assert image[:3].mean() < 0.2 and image[:, :3].mean() < 0.2  # the border is background
    solids = np.stack([s for _, s in parts])
    assert (solids.mean(0) % 1 != 0).mean() > 0.1  # poses differ: the parts do not overlap exactly
    centres = [np.argwhere(s).mean(0) for s in solids]
    assert np.ptp(np.stack(centres), axis=0).max() > 1  # shifted


@pytest.mark.parametrize("kind", KINDS)
def test_defects_on_a_part_lie_on_the_part(kind):
    rng = np.random.default_rng(5)
    clean, solid = part(rng, 64, 0.3, 0.06)
    image, mask = inject_on_part(rng, clean, solid, kind, 1.0)
    assert mask.any() and not (mask & ~solid).any()
    change = np.abs(image - clean)
    assert change[mask].mean() > 0.05 and change[~solid].max() < 1e-9  # the background is untouched


def test_the_part_category_is_written_in_mvtec_layout(tmp_path):
    params = SyntheticParams(category="part", image_size=48, n_train=3, n_test_good=1, n_test_per_type=1)
    root = write_mvtec(params, 2, tmp_path / "a")
    assert sorted(p.name for p in (root / "test").iterdir()) == sorted(["good", *KINDS])
    image = np.asarray(Image.open(root / "test/missing/000.png"))
    mask = np.asarray(Image.open(root / "ground_truth/missing/000_mask.png")) > 0
    assert mask.any() and image[mask].mean() < 60  # missing material: the dark background shows
    assert digest(root) == digest(write_mvtec(params, 2, tmp_path / "b"))
    assert digest(root) != digest(
        write_mvtec(SyntheticParams(**{**params.model_dump(), "category": "surface"}), 2, tmp_path / "c")
    )
