"""The optional feature model: PatchCore (Roth et al. 2022) on a ResNet-18 with ImageNet weights
from a local file (`train.backbone_weights`, torchvision's layout); nothing is downloaded.

Patch features are layer2 and layer3 (layer3 upsampled to layer2's 1/8 grid), each averaged over
its 3x3 neighbourhood as PatchCore does; the memory bank is a seeded random subsample of the good
training images' patch features (PatchCore's greedy coreset costs more than a CPU run allows). A
patch's score is the distance to its nearest neighbour in the bank; the grid of scores is
upsampled to the image and smoothed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from domains.common.vision import ResNet, load_torchvision_state, resnet18


@dataclass
class PatchCore:
    backbone: ResNet
    bank: torch.Tensor  # (memory, features)


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """ImageNet weights expect three channels: grey images are repeated."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


@torch.no_grad()
def patch_features(backbone: ResNet, images: torch.Tensor) -> torch.Tensor:
    """(N, rows, cols, features) locally averaged layer2 + layer3 features of uint8 images."""
    backbone.eval()
    _, layer2, layer3, _ = backbone.features(_rgb(images))
    layer2 = F.avg_pool2d(layer2, 3, stride=1, padding=1)
    layer3 = F.interpolate(F.avg_pool2d(layer3, 3, stride=1, padding=1), size=layer2.shape[-2:], mode="bilinear",
                           align_corners=False)
    return torch.cat([layer2, layer3], 1).permute(0, 2, 3, 1)


def load_backbone(file: str) -> ResNet:
    model = resnet18(in_channels=3)
    load_torchvision_state(model, file)
    return model.eval()


def fit_patchcore(images: np.ndarray, weights: str, memory: int, seed: int, batch_size: int = 16) -> PatchCore:
    """The memory bank of good uint8 images (N, C, H, W)."""
    backbone = load_backbone(weights)
    x = torch.from_numpy(images)
    features = torch.cat([patch_features(backbone, x[i:i + batch_size]).reshape(-1, 384)
                          for i in range(0, len(x), batch_size)])
    keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:memory]
    return PatchCore(backbone, features[keep].clone())


@torch.no_grad()
def patchcore_maps(model: PatchCore, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """(N, H, W) anomaly maps: nearest-neighbour distances in the bank, upsampled and smoothed."""
    height, width = images.shape[-2:]
    x = torch.from_numpy(images)
    maps = []
    for i in range(0, len(x), batch_size):
        features = patch_features(model.backbone, x[i:i + batch_size])
        n, rows, cols, dim = features.shape
        distance = torch.cdist(features.reshape(-1, dim), model.bank).amin(1).view(n, 1, rows, cols)
        up = F.interpolate(distance, size=(height, width), mode="bilinear", align_corners=False)[:, 0].numpy()
        maps.append(ndimage.gaussian_filter(up, sigma=(0, 4 * height / 256, 4 * width / 256)))
    return np.concatenate(maps) if maps else np.empty((0, height, width), dtype=np.float32)


def save_patchcore(model: PatchCore, file: Path) -> None:
    torch.save({"backbone": model.backbone.state_dict(), "bank": model.bank}, file)


def load_patchcore(file: Path) -> PatchCore:
    saved = torch.load(file, map_location="cpu", weights_only=True)
    backbone = resnet18(in_channels=3)
    backbone.load_state_dict(saved["backbone"])
    return PatchCore(backbone.eval(), saved["bank"])
