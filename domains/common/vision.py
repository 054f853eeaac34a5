"""Plain-torch vision blocks shared by the image domains (no torchvision, no timm: see DESIGN.md).

- `ResNet`: residual networks of `BasicBlock`s or `Bottleneck`s. `resnet18()` and `wide_resnet50_2()`
  have torchvision's ImageNet layout and state-dict keys, so a user's local copy of torchvision's
  weights loads as is (`torchvision_backbone` tells which from the file); `small_resnet()` has a 3x3
  stem without pooling, for small images (28-64 px) trained from scratch.
- `augment_images`: random flips, affine jitter and brightness/contrast on a batch, on its device.
- `recalibrate_batchnorm`: batch-norm statistics of clean images after training on augmented ones.
- `pooled`: one embedding per image from a feature map (the drift check's embedding distance).
- Images enter models as uint8 (0-255) or float (0-1) tensors (N, C, H, W); `to_unit` tells them apart.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from domains.common.params import AugmentParams


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Pixels as floats in [0, 1]: uint8 images are scaled, float images are taken as they are."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (He et al. 2016); torchvision's names for its parts."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided, torchvision's v1.5), 1x1 convolutions with a shortcut; `width_factor` 2 makes
    Wide ResNet's blocks (Zagoruyko & Komodakis 2016). torchvision's names for its parts."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, width_factor: int = 1):
        super().__init__()
        width = planes * width_factor
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """A ResNet of BasicBlocks (or Bottlenecks): stem, stages (`layer1`...), global average pool, `fc`.

    `imagenet_stem`: 7x7 stride-2 convolution and max-pool (torchvision's layout); otherwise one 3x3
    convolution at full resolution, which small images need. Inputs are standardised inside the
    model with `mean`/`std` buffers, so a saved model scores raw pixels.
    """

    mean: torch.Tensor  # buffer
    std: torch.Tensor  # buffer

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int],
        blocks: Sequence[int],
        imagenet_stem: bool = False,
        dropout: float = 0.0,
        bottleneck_width: int = 0,
    ):
        super().__init__()

        # bottleneck_width 0: BasicBlocks; n > 0: Bottlenecks n times as wide as ResNet-50's (2: Wide ResNet-50-2)
        def block(inplanes: int, planes: int, stride: int = 1) -> nn.Module:
            if bottleneck_width:
                return Bottleneck(inplanes, planes, stride, bottleneck_width)
            return BasicBlock(inplanes, planes, stride)

        expansion = Bottleneck.expansion if bottleneck_width else 1
        self.register_buffer("mean", torch.zeros(1, in_channels, 1, 1))
        self.register_buffer("std", torch.ones(1, in_channels, 1, 1))
        stem_width = widths[0]
        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        inplanes, stages = stem_width, []
        for i, (width, count) in enumerate(zip(widths, blocks)):
            layer = [block(inplanes, width, 1 if i == 0 else 2)]
            layer += [block(width * expansion, width) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layer))
            inplanes = width * expansion
        self.stages = len(stages)
        for i, stage in enumerate(stages, 1):
            setattr(self, f"layer{i}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # each residual branch starts near zero: deep nets train from the start
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
            elif isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage (layer1, layer2, ...), for feature-based models and Grad-CAM."""
        x = (to_unit(x) - self.mean) / self.std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = []
        for i in range(1, self.stages + 1):
            x = getattr(self, f"layer{i}")(x)
            outputs.append(x)
        return outputs

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(last), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1])


def resnet18(in_channels: int = 3, num_classes: int = 1000) -> ResNet:
    """ResNet-18 with torchvision's layout: `torchvision.models.resnet18().state_dict()` keys load as is
    (see `load_torchvision_state`)."""
    return ResNet(in_channels, num_classes, (64, 128, 256, 512), (2, 2, 2, 2), imagenet_stem=True)


def wide_resnet50_2(in_channels: int = 3, num_classes: int = 1000) -> ResNet:
    """Wide ResNet-50-2 with torchvision's layout (`torchvision.models.wide_resnet50_2().state_dict()` keys)."""
    return ResNet(in_channels, num_classes, (64, 128, 256, 512), (3, 4, 6, 3), imagenet_stem=True, bottleneck_width=2)


TORCHVISION_BACKBONES = {"resnet18": resnet18, "wide_resnet50_2": wide_resnet50_2}


def small_resnet(
    in_channels: int,
    num_classes: int,
    widths: Sequence[int] = (32, 64, 128),
    blocks: Sequence[int] = (2, 2, 2),
    dropout: float = 0.0,
) -> ResNet:
    return ResNet(in_channels, num_classes, widths, blocks, imagenet_stem=False, dropout=dropout)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _read_state(file: str) -> dict:
    from domains.common.errors import DataError

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise DataError(f"{file}: not a readable torch state dict, truncated or of another format ({first})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{file}: not a torch state dict (a mapping of names to tensors)")
    return state


def torchvision_architecture(state: dict) -> str:
    """What torchvision ResNet a state dict is, from its keys and shapes ("resnet18", "resnet50",
    "wide_resnet50_2", ...); "" when it is no ResNet."""
    if "conv1.weight" not in state or "layer1.0.conv1.weight" not in state:
        return ""
    blocks: tuple[int, ...] = tuple(
        len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)
    )
    basic: dict[tuple[int, ...], str] = {(2, 2, 2, 2): "resnet18", (3, 4, 6, 3): "resnet34"}
    depths: dict[tuple[int, ...], str] = {(3, 4, 6, 3): "50", (3, 4, 23, 3): "101", (3, 8, 36, 3): "152"}
    if "layer1.0.conv3.weight" not in state:
        return basic.get(blocks, f"a ResNet of {blocks} basic blocks")
    depth = depths.get(blocks, "?")
    width = state["layer1.0.conv1.weight"].shape[0] // 64
    return f"resnet{depth}" if width == 1 else f"wide_resnet{depth}_{width}"


def torchvision_backbone(file: str) -> tuple[ResNet, str]:
    """The ImageNet backbone in a torchvision state-dict file (resnet18-*.pth or wide_resnet50_2-*.pth as
    torch's hub cache keeps them), told apart by its contents; another architecture is refused in one line."""
    from domains.common.errors import DataError

    state = _read_state(file)
    arch = torchvision_architecture(state)
    if arch not in TORCHVISION_BACKBONES:
        what = f"a torchvision {arch} state dict" if arch else "not a torchvision ResNet state dict"
        raise DataError(f"{file}: {what}; backbone_weights takes {' or '.join(TORCHVISION_BACKBONES)}")
    model = TORCHVISION_BACKBONES[arch](in_channels=3)
    _load_state(model, state, file)
    return model.eval(), arch


def load_torchvision_state(model: ResNet, file: str) -> None:
    """Load a torchvision ResNet state dict (e.g. resnet18-f37072fd.pth) and ImageNet's input statistics."""
    _load_state(model, _read_state(file), file)


def _load_state(model: ResNet, state: dict, file: str) -> None:
    """Keys must match exactly, except `fc.*` (a classifier head of another size is left as it is) and
    this model's own `mean`/`std` buffers."""
    from domains.common.errors import DataError

    own = model.state_dict()
    wanted = {k for k in own if k not in ("mean", "std") and not k.startswith("fc.")}
    missing = sorted(wanted - set(state))
    if missing:
        raise DataError(
            f"{file}: not a torchvision ResNet state dict of this depth (missing {', '.join(missing[:3])}...)"
        )
    for key in wanted:
        if state[key].shape != own[key].shape:
            raise DataError(f"{file}: {key} has shape {tuple(state[key].shape)}, expected {tuple(own[key].shape)}")
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    channels = model.mean.shape[1]
    model.mean.copy_(
        torch.tensor(IMAGENET_MEAN[:channels] if channels == 3 else [sum(IMAGENET_MEAN) / 3]).view(1, -1, 1, 1)
    )
    model.std.copy_(
        torch.tensor(IMAGENET_STD[:channels] if channels == 3 else [sum(IMAGENET_STD) / 3]).view(1, -1, 1, 1)
    )


def augment_images(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """A randomly transformed copy of a batch (N, C, H, W), as floats in [0, 1]."""
    x = to_unit(x)
    n = x.shape[0]
    rand = lambda *shape: torch.rand(*shape, device=x.device)  # noqa: E731  (torch's seeded RNG)
    if p.hflip:
        x = torch.where(rand(n, 1, 1, 1) < 0.5, x.flip(3), x)
    if p.vflip:
        x = torch.where(rand(n, 1, 1, 1) < 0.5, x.flip(2), x)
    if p.rotate_degrees or p.translate or p.scale:
        angle = (rand(n) * 2 - 1) * math.radians(p.rotate_degrees)
        zoom = 1 + (rand(n) * 2 - 1) * p.scale
        shift = (rand(n, 2) * 2 - 1) * p.translate * 2  # grid coordinates span [-1, 1]
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if p.contrast or p.brightness:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (
            (x - mean) * (1 + (rand(n, 1, 1, 1) * 2 - 1) * p.contrast)
            + mean
            + (rand(n, 1, 1, 1) * 2 - 1) * p.brightness
        )
    return x.clamp(0, 1)


def pooled(features: torch.Tensor, how: Literal["mean", "median"]) -> np.ndarray:
    """(N, D) image embeddings of a feature map (N, D, H, W), each feature's spatial mean or median (drift's
    embeddings: domains/common/image_scoring.py).

    A classifier's embedding is what its head sees (the mean: global average pooling). An anomaly
    detector's is the median: a defect on a small part of an image, what the model is there to find,
    barely moves it, while what changes the whole image (lighting, blur, another part) moves it all."""
    flat = features.flatten(2).float()
    return (flat.mean(dim=2) if how == "mean" else flat.median(dim=2).values).cpu().numpy()


def set_input_statistics(model: ResNet, images: torch.Tensor) -> None:
    """Standardise inputs with the training images' per-channel mean and std (kept in the model)."""
    x = to_unit(images)
    model.mean.copy_(x.mean(dim=(0, 2, 3)).view(1, -1, 1, 1))
    model.std.copy_(x.std(dim=(0, 2, 3)).clamp_min(1e-3).view(1, -1, 1, 1))


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> None:
    """Recompute every batch-norm layer's running mean and variance over `images` (un-augmented).

    Training on augmented batches leaves statistics of augmented images (resampling smooths noise),
    which shifts a model's outputs on real images: on the synthetic medical default, the mean
    predicted probability on validation was 0.92 for 62 % positives. Exact averages over the clean
    training images ("precise BN", Wu & Johnson 2021) fix that without changing the weights.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        for layer in layers:  # this batch's weight in the average over the images seen so far
            layer.momentum = len(batch) / min(start + batch_size, len(images))
        model(batch.to(device))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    model.train(was_training)
