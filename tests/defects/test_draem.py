"""DRAEM's parts at tiny sizes: Perlin masks, textures, foreground, SSIM, the two sub-networks, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from domains.common.contract import TrainEnv
from domains.defects.draem import (
    Discriminative,
    Draem,
    Reconstructive,
    draem_loss,
    draem_maps,
    load_draem,
    save_draem,
    ssim,
    train_draem,
)
from domains.defects.params import DefectsTrainParams
from domains.defects.perlin import dilate, draem_anomalies, foreground_masks, perlin_masks, perlin_noise, textures


def test_perlin_masks_cover_a_bounded_share_and_are_seeded():
    masks = perlin_masks(48, 40, 56, torch.Generator().manual_seed(3))
    assert masks.shape == (48, 1, 40, 56) and set(masks.unique().tolist()) <= {0.0, 1.0}
    cover = masks.mean(dim=(1, 2, 3))
    assert cover.min() >= 0.002 - 1e-9 and cover.max() <= 0.6  # never empty, never the whole image
    assert cover.std() > 0.01  # from specks to large blobs
    again = perlin_masks(48, 40, 56, torch.Generator().manual_seed(3))
    assert torch.equal(masks, again)
    assert not torch.equal(masks, perlin_masks(48, 40, 56, torch.Generator().manual_seed(4)))


def test_perlin_noise_is_zero_on_the_lattice_and_bounded():
    noise = perlin_noise(32, 32, (4, 2), torch.Generator().manual_seed(0))
    assert noise[::8, ::16].abs().max() < 1e-6  # gradient noise vanishes at lattice points
    assert noise.abs().max() <= math.sqrt(2) and noise.std() > 0.1


def test_textures_are_varied_images_in_range():
    t = textures(12, 3, 24, 20, torch.Generator().manual_seed(1))
    assert t.shape == (12, 3, 24, 20) and t.min() >= 0 and t.max() <= 1
    assert len({round(float(x), 4) for x in t.mean(dim=(1, 2, 3))}) > 6


def test_foreground_is_the_object_and_a_texture_is_all_foreground():
    x = torch.zeros(2, 1, 64, 64)
    x[0, :, 20:40, 16:48] = 0.8  # a part on a dark background
    x[1] = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0))  # a texture
    fg = foreground_masks(x)
    assert fg[0, 0, 30, 30] == 1 and fg[0, 0, 2, 2] == 0 and fg[0, 0, 60, 60] == 0
    assert fg[1].min() == 1


def test_anomalies_land_on_the_foreground_and_change_only_their_masks():
    x = torch.full((6, 1, 48, 48), 0.1)
    x[:, :, 12:36, 12:36] = 0.6
    pasted, masks = draem_anomalies(x, 1.0, ("texture", "image"), True, torch.Generator().manual_seed(2))
    assert masks.sum() > 0 and masks[..., :8, :].sum() == 0  # nothing on the background far from the part
    assert torch.equal(pasted * (1 - masks), x * (1 - masks))
    again = draem_anomalies(x, 1.0, ("texture", "image"), True, torch.Generator().manual_seed(2))
    assert torch.equal(pasted, again[0])
    _, none = draem_anomalies(x, 0.0, ("texture",), True, torch.Generator().manual_seed(2))
    assert none.sum() == 0


def test_ssim_of_a_hand_computed_case():
    a, b, c1 = 0.2, 0.6, 0.01**2
    x, y = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
    # constant images: no variance or covariance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) exactly
    assert float(ssim(x, y)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-5)
    z = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    assert float(ssim(z, z)) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(z, 1 - z)) < 0  # anti-correlated structure


def test_ssim_stays_float32_under_mixed_precision():
    # the trainer computes losses under autocast: bf16 blurs rounded this pair's SSIM to 1.0 and could
    # drive its gradient to NaN (seen training a reconstruction against a clean image)
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(4, 1, 64, 64, generator=g)
    recon = (clean + 0.01 * torch.randn(4, 1, 64, 64, generator=g)).requires_grad_()
    exact = float(ssim(clean, recon.detach()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ssim(clean, recon)
    assert mixed.dtype == torch.float32 and float(mixed.detach()) == pytest.approx(exact, abs=1e-6) and exact < 0.9995
    mixed.backward()
    assert recon.grad is not None and torch.isfinite(recon.grad).all()


@pytest.mark.parametrize("shape", [(2, 1, 37, 45), (1, 3, 33, 64)])
def test_both_sub_networks_keep_odd_image_sizes(shape):
    x = torch.rand(*shape)
    c = shape[1]
    assert Reconstructive(c, 4)(x).shape == shape
    assert Discriminative(c, 2)(torch.cat([x, x], 1)).shape == (shape[0], 1, *shape[2:])
    model = Draem(c, 4).eval()
    reconstruction, logits = model(x)
    assert reconstruction.shape == shape and logits.shape == (shape[0], 1, *shape[2:])
    maps = draem_maps(Draem(c, 4, size=32), (x * 255).to(torch.uint8))
    assert maps.shape == (shape[0], *shape[2:]) and (maps >= 0).all() and (maps <= 1).all()


def test_the_loss_is_l2_plus_ssim_plus_focal():
    clean = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(2, 1, 32, 32)
    logits = torch.full((2, 1, 32, 32), -20.0)  # certain and right: no focal loss
    assert float(draem_loss((clean, logits), torch.cat([clean, masks], 1))) == pytest.approx(0, abs=1e-5)
    shifted = clean + 0.1  # L2 0.01; SSIM loses only its luminance term
    expected = 0.01 + 1 - float(ssim(shifted, clean))
    assert float(draem_loss((shifted, logits), torch.cat([clean, masks], 1))) == pytest.approx(expected, abs=1e-5)
    masks[:, :, :4] = 1  # wrong and certain: the focal loss counts those pixels fully
    focal = float(draem_loss((clean, logits), torch.cat([clean, masks], 1)))
    assert focal == pytest.approx(20 * 4 / 32, rel=1e-3)


def test_training_through_the_shared_trainer_is_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(90, 160, (8, 1, 32, 32), dtype=np.uint8)
    val = rng.integers(90, 160, (2, 1, 32, 32), dtype=np.uint8)
    p = DefectsTrainParams(epochs=2, batch_size=4, draem_width=4, draem_size=None, num_threads=1, patience=2)
    model, history = train_draem(train, val, p, 0, TrainEnv(tmp_path / "a", "x"))
    again, _ = train_draem(train, val, p, 0, TrainEnv(tmp_path / "b", "x"))
    assert len(history.epochs) == 2 and 0 <= history.best_score <= 1
    images = torch.from_numpy(val)
    assert np.array_equal(draem_maps(model, images), draem_maps(again, images))
    save_draem(model, tmp_path / "draem.pt")
    assert np.array_equal(draem_maps(load_draem(tmp_path / "draem.pt"), images), draem_maps(model, images))


@pytest.mark.parametrize("shape,k", [((3, 1, 17, 29), 3), ((2, 1, 128, 128), 9), ((2, 1, 5, 5), 5)])
def test_dilate_is_a_square_max_filter(shape, k):
    """The two 1-d max pools give exactly what one k x k `max_pool2d` gives (on any shape, at the borders too)."""
    masks = (torch.rand(shape, generator=torch.Generator().manual_seed(k)) > 0.95).float()
    assert torch.equal(dilate(masks, k), torch.nn.functional.max_pool2d(masks, k, 1, k // 2))
