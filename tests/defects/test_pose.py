"""Pose alignment (domains/defects/pose.py): parts at any pose turned to one, textures left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from domains.defects.pose import alignable, canonical_pose, inverse, to_canonical, warp
from domains.defects.segmenter import Segmenter, anomaly_maps, load_segmenter, save_segmenter
from domains.defects.synthetic import part, surface

SIZE = 96


def _part(seed: int = 0) -> tuple[np.ndarray, float]:
    """One part in [0, 1] and its background level."""
    image, solid = part(np.random.default_rng(seed), SIZE, 0.3, 0.0)
    return image, float(np.median(image[~solid]))


def _turned(image: np.ndarray, background: float, degrees: float, shift: tuple[int, int]) -> torch.Tensor:
    turned = ndimage.rotate(image, degrees, reshape=False, order=1, mode="constant", cval=background)
    return torch.from_numpy(ndimage.shift(turned, shift, order=1, mode="nearest")).float()[None, None]


def test_one_part_at_any_pose_is_turned_to_the_same_pose():
    image, background = _part()
    poses = [(0, (0, 0)), (37, (4, -3)), (121, (-5, 2)), (250, (3, 5)), (333, (0, -6))]
    x = torch.cat([_turned(image, background, d, s) for d, s in poses]).clamp(0, 1)
    aligned = warp(x, canonical_pose(x))
    inner = slice(SIZE // 6, -SIZE // 6)  # the part; the corners are background either way
    before = (x[1:] - x[:1]).abs()[..., inner, inner].mean()
    after = (aligned[1:] - aligned[:1]).abs()[..., inner, inner].mean(dim=(1, 2, 3))
    assert (after < 0.25 * before).all(), (before, after)
    assert after.max() < 0.05


def test_a_turn_and_its_inverse_give_the_image_back():
    image, background = _part(1)
    x = _turned(image, background, 70, (3, -2))
    pose = canonical_pose(x)
    back = warp(warp(x, pose), inverse(pose))
    inner = slice(SIZE // 4, -SIZE // 4)
    assert (back - x)[..., inner, inner].abs().mean() < 0.02
    assert torch.allclose(inverse(inverse(pose)), pose, atol=1e-5)


def test_parts_are_aligned_textures_and_round_parts_are_not_and_a_whole_foreground_is_not_turned():
    rng = np.random.default_rng(2)
    textures = torch.from_numpy(np.stack([surface(rng, 64, 0.4) for _ in range(12)])).float()[:, None]
    assert not alignable(textures)
    parts = torch.from_numpy(np.stack([part(rng, 64, 0.4, 0.06)[0] for _ in range(12)])).float()[:, None]
    assert alignable(parts)
    yy, xx = np.mgrid[0:64, 0:64] - 31.5
    ring = (np.hypot(yy, xx) < 20) & (np.hypot(yy, xx) > 6)  # a washer: its axis would be noise
    discs = np.stack([np.where(ring, surface(rng, 64, 0.4), 0.1) for _ in range(12)])
    assert not alignable(torch.from_numpy(discs).float()[:, None])
    flat = torch.full((2, 1, 40, 40), 0.5)
    flat[1, :, ::2] = 0.9  # stripes everywhere: all of it differs from the border's median
    assert torch.equal(canonical_pose(flat), torch.eye(2, 3).expand(2, 2, 3))


@pytest.mark.parametrize("shape", [(2, 1, 48, 48), (1, 3, 40, 56)])
def test_an_aligned_segmenter_maps_at_the_image_resolution_and_saves_its_setting(shape, tmp_path):
    model = Segmenter(shape[1], width=4, align=True).eval()
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    images[..., :4, :] = images[..., -4:, :] = images[..., :, :4] = images[..., :, -4:] = 20  # a background
    maps = anomaly_maps(model, images)
    assert maps.shape == (shape[0], *shape[2:]) and np.isfinite(maps).all()
    save_segmenter(model, tmp_path / "segmenter.pt")
    loaded = load_segmenter(tmp_path / "segmenter.pt")
    assert loaded.align and np.array_equal(anomaly_maps(loaded, images), maps)
    # a model saved before alignment existed loads with it off
    saved = torch.load(tmp_path / "segmenter.pt", weights_only=True)
    del saved["align"]
    torch.save(saved, tmp_path / "old.pt")
    assert not load_segmenter(tmp_path / "old.pt").align


def test_poses_are_float32_inside_a_bf16_autocast():
    image, background = _part(3)
    x = torch.cat([_turned(image, background, d, (0, 0)) for d in (10, 200)]).clamp(0, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        turned, pose = to_canonical(x)
    expected, expected_pose = to_canonical(x)
    assert pose.dtype == turned.dtype == torch.float32
    assert torch.equal(pose, expected_pose) and torch.equal(turned, expected)
