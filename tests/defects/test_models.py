"""The pasted anomalies, the torch segmenter, the scikit-learn patch Gaussian and the PatchCore option."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from domains.common.contract import TrainEnv
from domains.common.errors import DataError
from domains.common.vision import ResNet, resnet18, wide_resnet50_2
from domains.defects.anomalies import anomaly_masks, blob_masks, ellipse_masks, paste_anomalies, stroke_masks
from domains.defects.baseline import fit_patch_gaussian, patch_gaussian_maps
from domains.defects.params import DefectsTrainParams
from domains.defects.patchcore import fit_patchcore, load_backbone, load_patchcore, patchcore_maps, save_patchcore
from domains.defects.segmenter import (
    FLIPS,
    SHIFTS,
    Segmenter,
    anomaly_maps,
    load_segmenter,
    save_segmenter,
    segmentation_loss,
    segmenter_embeddings,
    segmenter_outputs,
    train_segmenter,
)
from domains.defects.synthetic import inject, surface

DEVICE = torch.device("cpu")


def surfaces(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """(n, 1, size, size) uint8 good surfaces sharing one grain direction."""
    rng = np.random.default_rng(seed)
    return np.stack([np.round(surface(rng, size, 0.4) * 255).astype(np.uint8)[None] for _ in range(n)])


@pytest.mark.parametrize("make", [blob_masks, stroke_masks, ellipse_masks, anomaly_masks])
def test_anomaly_masks_are_binary_and_small(make):
    masks = make(16, 64, DEVICE, torch.Generator().manual_seed(0))
    assert masks.shape == (16, 1, 64, 64)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    coverage = masks.mean(dim=(1, 2, 3))
    assert (coverage < 0.35).all() and (coverage > 0).sum() >= 12  # a walk may leave the image


def test_anomalies_change_only_their_masks_and_are_seeded():
    x = torch.from_numpy(surfaces(8)).float() / 255
    pasted, masks = paste_anomalies(x, 1.0, torch.Generator().manual_seed(1))
    assert pasted.shape == x.shape and masks.shape == (8, 1, 32, 32)
    outside = (masks == 0).expand_as(x)
    assert torch.equal(pasted[outside], x[outside])
    changed = (pasted - x).abs()[masks.bool().expand_as(x)]
    assert changed.mean() > 0.05  # visible: never a fill close to the surface
    again, _ = paste_anomalies(x, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(pasted, again)


def test_a_same_brightness_fill_differs_by_texture_alone():
    g = torch.Generator().manual_seed(4)
    levels = torch.linspace(0.3, 0.7, 8).view(8, 1, 1, 1)
    x = levels * (0.5 + 0.5 * torch.rand(8, 1, 48, 48, generator=g))  # one brightness each, each its own grain

    def relative_brightness_change(fill: str) -> torch.Tensor:
        pasted, masks = paste_anomalies(x, 1.0, torch.Generator().manual_seed(5), fills=[fill])
        inside = masks.sum((1, 2, 3))
        seen = inside >= 20
        mean_of = lambda images: (images * masks).sum((1, 2, 3))[seen] / inside[seen]  # noqa: E731
        assert ((pasted - x).abs() * masks).sum() / masks.sum() > 0.05  # the grain changed
        return (mean_of(pasted) - mean_of(x)).abs() / mean_of(x)

    assert relative_brightness_change("other_same_brightness").max() < 0.1
    assert relative_brightness_change("darker_brighter").min() > 0.1


def test_foreground_anomalies_stay_on_the_part_and_a_texture_is_all_foreground():
    x = torch.full((6, 1, 48, 48), 0.1)
    x[:, :, 12:36, 12:36] = 0.6  # a part on a dark background
    pasted, masks = paste_anomalies(x, 1.0, torch.Generator().manual_seed(2), foreground=True)
    assert masks.sum() > 0 and masks[..., :8, :].sum() == 0 and masks[..., 40:, :].sum() == 0
    assert torch.equal(pasted * (1 - masks), x * (1 - masks))
    anywhere = paste_anomalies(x, 1.0, torch.Generator().manual_seed(2))[1]
    assert anywhere[..., :8, :].sum() > 0  # without it, the background gets anomalies too
    texture = torch.rand(4, 1, 48, 48, generator=torch.Generator().manual_seed(0))  # all foreground: as without
    for a, b in zip(
        paste_anomalies(texture, 1.0, torch.Generator().manual_seed(3), foreground=True),
        paste_anomalies(texture, 1.0, torch.Generator().manual_seed(3)),
    ):
        assert torch.equal(a, b)


def test_a_share_of_zero_pastes_nothing():
    x = torch.rand(4, 1, 16, 16)
    pasted, masks = paste_anomalies(x, 1e-9, torch.Generator().manual_seed(0))
    assert torch.equal(pasted, x) and masks.sum() == 0


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 3, 40, 56)])
def test_segmenter_maps_have_the_image_resolution(shape):
    model = Segmenter(shape[1], width=4)
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    assert model(images).shape == (shape[0], 1, *shape[2:])
    maps = anomaly_maps(model, images)
    assert maps.shape == (shape[0], *shape[2:]) and 0 <= maps.min() and maps.max() <= 1


def test_flip_averaging_is_the_mean_of_the_flipped_maps_and_is_saved(tmp_path):
    torch.manual_seed(0)
    plain = Segmenter(1, width=4).eval()
    images = torch.randint(0, 256, (3, 1, 40, 56), dtype=torch.uint8)
    # each flipped image's map, flipped back (maps are N, H, W: image dim d is map dim d - 1)
    flipped = [np.flip(anomaly_maps(plain, images.flip(d)), [k - 1 for k in d]) for d in FLIPS]
    expected = anomaly_maps(plain, images) + sum(flipped)
    averaged = Segmenter(1, width=4, flip_average=True).eval()
    averaged.load_state_dict(plain.state_dict())
    maps = anomaly_maps(averaged, images)
    assert maps.shape == (3, 40, 56) and np.abs(maps - expected / (len(FLIPS) + 1)).max() < 1e-5
    assert np.abs(maps - anomaly_maps(plain, images)).max() > 1e-3  # the flips did change it
    _assert_saved_and_off_in_older_files(averaged, images, maps, "flip_average", tmp_path)


def test_shift_averaging_is_the_mean_of_the_shifted_maps_and_is_saved(tmp_path):
    torch.manual_seed(0)
    plain = Segmenter(1, width=4).eval()
    images = torch.randint(0, 256, (3, 1, 40, 56), dtype=torch.uint8)

    def shifted_back(model: Segmenter, dy: int, dx: int) -> np.ndarray:
        """The map of the image moved down dy and right dx (edges repeated), moved back (edges repeated)."""
        moved = np.pad(images.numpy(), ((0, 0), (0, 0), (dy, 0), (dx, 0)), mode="edge")[..., :40, :56]
        return np.pad(anomaly_maps(model, torch.from_numpy(moved)), ((0, 0), (0, dy), (0, dx)), mode="edge")[
            :, dy:, dx:
        ]

    for flips in (False, True):  # with flips: each shifted image's flip-averaged map, so all 16 views
        inner = Segmenter(1, width=4, flip_average=flips).eval()
        inner.load_state_dict(plain.state_dict())
        expected = sum(shifted_back(inner, dy, dx) for dy, dx in ((0, 0), *SHIFTS)) / (len(SHIFTS) + 1)
        averaged = Segmenter(1, width=4, flip_average=flips, shift_average=True).eval()
        averaged.load_state_dict(plain.state_dict())
        maps = anomaly_maps(averaged, images)
        assert maps.shape == (3, 40, 56) and np.abs(maps - expected).max() < 1e-5
        assert np.abs(maps - anomaly_maps(inner, images)).max() > 1e-3  # the shifts did change it
    _assert_saved_and_off_in_older_files(averaged, images, maps, "shift_average", tmp_path)


def test_embeddings_alone_are_those_of_the_views_pass_from_one_view():
    torch.manual_seed(0)
    model = Segmenter(1, width=4, flip_average=True, shift_average=True).eval()
    images = torch.randint(0, 256, (5, 1, 40, 56), dtype=torch.uint8)
    alone = segmenter_embeddings(model, images, batch_size=2)
    assert alone.shape == (5, 32)
    np.testing.assert_allclose(alone, segmenter_outputs(model, images)[1], atol=1e-5)
    assert segmenter_embeddings(model, images[:0]).shape == (0, 32)


def _assert_saved_and_off_in_older_files(
    model: Segmenter, images: torch.Tensor, maps: np.ndarray, setting: str, tmp_path: Path
) -> None:
    """The model's maps survive saving, and a file saved before `setting` existed loads with it off."""
    save_segmenter(model, tmp_path / "segmenter.pt")
    assert np.array_equal(anomaly_maps(load_segmenter(tmp_path / "segmenter.pt"), images), maps)
    saved = torch.load(tmp_path / "segmenter.pt", weights_only=True)
    del saved[setting]
    torch.save(saved, tmp_path / "old.pt")
    assert not getattr(load_segmenter(tmp_path / "old.pt"), setting)


@pytest.mark.parametrize("setting", [False, True, "auto"])
def test_flip_and_shift_averaging_are_kept_where_validation_gains(setting, tmp_path, capsys):
    train, val = surfaces(8, seed=1), surfaces(3, seed=2)
    params = _tiny_train_params(flip_average=setting, shift_average=setting)
    model, _ = train_segmenter(train, val, params, 0, TrainEnv(tmp_path, "f"))
    if setting != "auto":
        assert model.flip_average is setting and model.shift_average is setting
        return
    log = capsys.readouterr().err.splitlines()
    for name in ("flip_average", "shift_average"):
        line = next(x for x in log if f"{name.replace('_', ' ')}: validation pixel AP" in x)
        plain, averaged = (float(v) for v in line.split("AP ")[1].split(" -> "))
        assert getattr(model, name) == (averaged > plain) or abs(averaged - plain) < 1e-4  # the log rounds to 4 places


def test_a_few_steps_reduce_the_segmentation_loss():
    torch.manual_seed(0)
    model = Segmenter(1, width=8)
    x, masks = paste_anomalies(torch.from_numpy(surfaces(8)).float() / 255, 1.0, torch.Generator().manual_seed(2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = segmentation_loss(model(x), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def _tiny_train_params(**kw) -> DefectsTrainParams:
    return DefectsTrainParams(epochs=2, batch_size=4, width=4, num_threads=1, lr=3e-3, **kw)


@pytest.mark.parametrize("poses", [{}, {"foreground": True, "rotate": True}, {"align": True}])
def test_training_through_the_shared_trainer_is_deterministic(tmp_path, poses):
    train, val = surfaces(8, seed=1), surfaces(3, seed=2)
    env = TrainEnv(tmp_path, "fingerprint")
    first, history = train_segmenter(train, val, _tiny_train_params(crop=24, **poses), 0, env)
    second, _ = train_segmenter(train, val, _tiny_train_params(crop=24, **poses), 0, env)
    assert len(history.epochs) == 2 and 0 <= history.best_score <= 1
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    save_segmenter(first, tmp_path / "segmenter.pt")
    images = torch.from_numpy(val)
    assert np.array_equal(anomaly_maps(load_segmenter(tmp_path / "segmenter.pt"), images), anomaly_maps(first, images))


def test_patch_gaussian_finds_missing_material():
    train = surfaces(30, size=48)
    model = fit_patch_gaussian(train, patch=8, components=6, patches_per_image=50, seed=0)
    clean = surface(np.random.default_rng(9), 48, 0.4)
    damaged, mask = inject(np.random.default_rng(4), clean, "missing", 1.0)
    images = np.stack([np.round(a * 255).astype(np.uint8)[None] for a in (clean, damaged)])
    maps = patch_gaussian_maps(model, images)
    assert maps.shape == (2, 48, 48)
    assert maps[1][mask].mean() > 2 * maps[1][~mask].mean()
    assert maps[1].max() > maps[0].max()


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> str:
    """A randomly initialised ResNet-18 saved as torchvision saves its ImageNet weights (no mean/std buffers)."""
    torch.manual_seed(0)
    state = {k: v for k, v in resnet18().state_dict().items() if k not in ("mean", "std")}
    file = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(state, file)
    return str(file)


def test_patchcore_from_a_local_weights_file(random_weights, tmp_path):
    train = surfaces(4, size=64)
    model = fit_patchcore(train, load_backbone(random_weights), memory=100, seed=0)
    assert model.bank.shape == (100, 384) and model.arch == "resnet18"  # of 4 x 8 x 8 patches
    maps = patchcore_maps(model, train[:2])
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()
    save_patchcore(model, tmp_path / "patchcore.pt")
    assert np.allclose(patchcore_maps(load_patchcore(tmp_path / "patchcore.pt"), train[:2]), maps)


def test_the_hub_cache_file_is_found_by_architecture(random_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(DataError, match="no resnet18-\\*.pth in .*hub/checkpoints .*nothing is downloaded"):
        load_backbone("resnet18")
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(random_weights, cache / "resnet18-f37072fd.pth")  # the name torchvision gives it
    assert load_backbone("resnet18")[1] == "resnet18"


def test_a_wide_resnet50_2_file_is_read_by_its_layout(tmp_path):
    torch.manual_seed(0)
    state = {k: v for k, v in wide_resnet50_2().state_dict().items() if k not in ("mean", "std")}
    torch.save(state, tmp_path / "wide_resnet50_2-95faca4d.pth")
    model = fit_patchcore(surfaces(1, size=32), load_backbone(str(tmp_path / "wide_resnet50_2-95faca4d.pth")), 20, 0)
    assert model.arch == "wide_resnet50_2" and model.bank.shape == (16, 1536)  # layer2 512 + layer3 1024


def _resnet34_state() -> dict:
    return {
        k: v
        for k, v in ResNet(3, 10, (64, 128, 256, 512), (3, 4, 6, 3), imagenet_stem=True).state_dict().items()
        if k not in ("mean", "std")
    }


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            lambda: {"conv1.weight": torch.zeros(3)},
            "not a torchvision ResNet state dict; backbone_weights takes resnet18 or",
        ),
        (_resnet34_state, "a torchvision resnet34 state dict; backbone_weights takes resnet18 or wide_resnet50_2"),
        (None, "not a readable torch state dict, truncated or of another format"),
    ],
)
def test_patchcore_refuses_another_architecture_or_a_truncated_file(random_weights, tmp_path, content, expected):
    file = tmp_path / "other.pth"
    if content is None:
        file.write_bytes(Path(random_weights).read_bytes()[:5000])
    else:
        torch.save(content(), file)
    with pytest.raises(DataError, match=expected) as err:
        load_backbone(str(file))
    assert "\n" not in str(err.value)
