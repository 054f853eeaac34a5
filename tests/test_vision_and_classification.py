"""Plain-torch vision blocks and the shared classification metrics."""

import numpy as np
import pytest
import torch

from domains.common.classification import auroc, classification_metrics, expected_calibration_error, youden_threshold
from domains.common.errors import DataError
from domains.common.params import AugmentParams, TrainerParams
from domains.common.trainer import Batches, fit
from domains.common.vision import augment_images, load_torchvision_state, recalibrate_batchnorm, resnet18, small_resnet

# A sample of torchvision's resnet18().state_dict() keys (torchvision is not installed here).
TORCHVISION_KEYS = [
    "conv1.weight",
    "bn1.running_var",
    "layer1.0.conv1.weight",
    "layer1.1.bn2.num_batches_tracked",
    "layer2.0.downsample.0.weight",
    "layer2.0.downsample.1.running_mean",
    "layer4.1.conv2.weight",
    "fc.weight",
    "fc.bias",
]


def test_resnet18_has_torchvisions_state_dict_layout(tmp_path):
    model = resnet18()
    keys = [k for k in model.state_dict() if k not in ("mean", "std")]
    assert len(keys) == 122 and set(TORCHVISION_KEYS) <= set(keys)  # torchvision's resnet18 has 122 entries
    assert sum(p.numel() for p in model.parameters()) == 11_689_512  # torchvision's count
    torch.save(
        {k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items() if k not in ("mean", "std")},
        tmp_path / "resnet18.pth",
    )
    fresh = resnet18(in_channels=3, num_classes=2)  # another head: fc is left as it is
    load_torchvision_state(fresh, str(tmp_path / "resnet18.pth"))
    assert torch.equal(fresh.layer3[0].conv1.weight, torch.load(tmp_path / "resnet18.pth")["layer3.0.conv1.weight"])
    assert fresh(torch.zeros(1, 3, 64, 64, dtype=torch.uint8)).shape == (1, 2)


def test_a_state_dict_of_another_layout_is_one_clear_error(tmp_path):
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(DataError, match="not a torchvision ResNet state dict"):
        load_torchvision_state(resnet18(), str(tmp_path / "other.pth"))
    (tmp_path / "junk.pth").write_text("no")
    with pytest.raises(DataError, match="not a readable torch state dict"):
        load_torchvision_state(resnet18(), str(tmp_path / "junk.pth"))


def test_small_resnet_shapes_and_a_few_steps_reduce_the_loss(tmp_path):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8)
    y = (x.float().mean(dim=(1, 2, 3)) > 127.5).long()
    model = small_resnet(1, 2, (8, 16), (1, 1))
    assert model(x).shape == (64, 2) and [f.shape[1] for f in model.features(x)] == [8, 16]
    loss = lambda out, t: torch.nn.functional.cross_entropy(out, t)  # noqa: E731
    with torch.no_grad():
        before = float(loss(model.eval()(x), y))
    params = TrainerParams(
        epochs=5,
        batch_size=16,
        lr=0.01,
        device="cpu",
        lr_schedule="cosine",
        optimizer="adamw",
        weight_decay=1e-4,
        patience=10,
        num_threads=1,
    )
    history = fit(
        model,
        Batches(64, lambda rows: (x[rows], y[rows])),
        loss,
        lambda m: -float(loss(m(x), y)),
        params,
        seed=0,
        checkpoint=tmp_path / "ck",
        fingerprint="f",
        augment=lambda b: (augment_images(b[0], AugmentParams(brightness=0, contrast=0)), b[1]),
    )
    with torch.no_grad():
        assert float(loss(model.eval()(x), y)) < before and len(history.epochs) == 5


def test_augment_images_is_seeded_and_stays_in_range():
    x = torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8)
    torch.manual_seed(5)
    a = augment_images(x, AugmentParams(vflip=True))
    torch.manual_seed(5)
    assert torch.equal(a, augment_images(x, AugmentParams(vflip=True)))
    assert a.min() >= 0 and a.max() <= 1 and a.shape == (4, 3, 12, 12)


def test_recalibrated_batchnorm_holds_the_exact_statistics_of_the_clean_images():
    torch.manual_seed(0)
    model = small_resnet(1, 2, widths=(4,), blocks=(1,)).eval()
    images = torch.randint(0, 256, (50, 1, 8, 8), dtype=torch.uint8)
    model.bn1.running_mean.fill_(5.0)  # as if trained on other (augmented) images
    recalibrate_batchnorm(model, images, batch_size=16)  # uneven batches: 16, 16, 16, 2
    stem = model.conv1((images.float() / 255 - model.mean) / model.std)
    assert torch.allclose(model.bn1.running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-5)
    assert not model.training and model.bn1.momentum == 0.1


def test_ece_of_a_hand_made_case():
    # Four predictions at confidence 0.9, three right: |0.75 - 0.9| = 0.15; two at 0.6, both right: 0.4.
    proba = np.array([[0.1, 0.9]] * 4 + [[0.6, 0.4]] * 2)
    y = np.array([1, 1, 1, 0, 0, 0])
    assert expected_calibration_error(y, proba) == pytest.approx((4 * 0.15 + 2 * 0.4) / 6)


def test_metrics_binary_and_multiclass():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    m = classification_metrics(y, proba)
    assert (m["accuracy"], m["auroc"], m["sensitivity"], m["specificity"]) == (0.75, 1.0, 1.0, 0.5)
    assert classification_metrics(y, proba, threshold=0.65)["accuracy"] == 1.0
    assert 0.6 < youden_threshold(y, proba[:, 1]) <= 0.7
    multi = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]])
    assert auroc(np.array([0, 1, 2, 1]), multi) == pytest.approx(np.mean([1.0, 1.0, 1.0]))
    assert classification_metrics(np.array([0, 1, 2, 1]), multi)["accuracy"] == 0.75
