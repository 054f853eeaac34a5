"""PatchCore (Roth et al. 2022), optional: on an ImageNet ResNet-18 or Wide ResNet-50-2 from a local
file (`train.backbone_weights`); nothing is downloaded.

`backbone_weights` is a path to torchvision's state dict (`resnet18-f37072fd.pth`,
`wide_resnet50_2-95faca4d.pth`, as torch's hub cache keeps them after any torchvision download), or
just `resnet18` / `wide_resnet50_2`: the newest such file in `$TORCH_HOME/hub/checkpoints` (default
`~/.cache/torch/hub/checkpoints`). The architecture is read from the file, not its name; another
architecture, a truncated file or a missing one stops training in one line before any model is fit.
PatchCore's paper uses Wide ResNet-50-2 (MVTec AD image AUROC 99.1 with the full coreset).

Patch features are layer2 and layer3 (layer3 upsampled to layer2's 1/8 grid), each averaged over
its 3x3 neighbourhood as PatchCore does; the memory bank is `memory` of the good training images' patch
features, picked by PatchCore's greedy coreset (memory_bank.py; seconds on a CPU for a few thousand). A
patch's score is the distance to its nearest neighbour in the bank; the grid of scores is
upsampled to the image and smoothed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from domains.common.errors import DataError
from domains.common.vision import TORCHVISION_BACKBONES, ResNet, pooled, torchvision_backbone
from domains.defects.memory_bank import distance_maps, greedy_coreset


@dataclass
class PatchCore:
    backbone: ResNet
    bank: torch.Tensor  # (memory, features)
    arch: str = "resnet18"


def hub_dir() -> Path:
    """Where torch keeps downloaded weights: $TORCH_HOME/hub/checkpoints (torch.hub's default location)."""
    home = os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return Path(home).expanduser() / "hub" / "checkpoints"


def resolve_weights(value: str) -> Path:
    """The weights file `train.backbone_weights` names: a path, or an architecture found in torch's hub cache."""
    if value in TORCHVISION_BACKBONES:
        found = sorted(hub_dir().glob(f"{value}-*.pth"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise DataError(
                f"train.backbone_weights: no {value}-*.pth in {hub_dir()} (torch's hub cache); nothing is "
                "downloaded: put torchvision's file there, or name its path"
            )
        return found[-1]
    path = Path(value).expanduser()
    if not path.is_file():
        raise DataError(f"train.backbone_weights: {path}: file not found")
    return path


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """ImageNet weights expect three channels: grey images are repeated."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


@torch.no_grad()
def patch_features(backbone: ResNet, images: torch.Tensor) -> torch.Tensor:
    """(N, rows, cols, features) locally averaged layer2 + layer3 features of uint8 images."""
    backbone.eval()
    _, layer2, layer3, _ = backbone.features(_rgb(images))  # 128 + 256 or 512 + 1024 channels
    layer2 = F.avg_pool2d(layer2, 3, stride=1, padding=1)
    layer3 = F.interpolate(
        F.avg_pool2d(layer3, 3, stride=1, padding=1), size=layer2.shape[-2:], mode="bilinear", align_corners=False
    )
    return torch.cat([layer2, layer3], 1).permute(0, 2, 3, 1)


def load_backbone(value: str) -> tuple[ResNet, str]:
    """The backbone and its architecture's name, from `train.backbone_weights` (see the module's docstring)."""
    return torchvision_backbone(str(resolve_weights(value)))


def fit_patchcore(
    images: np.ndarray, backbone: tuple[ResNet, str], memory: int, seed: int, batch_size: int = 16
) -> PatchCore:
    """The memory bank of good uint8 images (N, C, H, W)."""
    net, arch = backbone
    x = torch.from_numpy(images)
    features = torch.cat(
        [patch_features(net, x[i : i + batch_size]).flatten(0, 2) for i in range(0, len(x), batch_size)]
    )
    return PatchCore(net, greedy_coreset(features, memory, seed), arch)


@torch.no_grad()
def patchcore_outputs(model: PatchCore, images: np.ndarray, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) anomaly maps (nearest-neighbour distances in the bank, upsampled and smoothed) and (N, D)
    embeddings (drift: the patch features, median over positions) of uint8 images, from one pass."""
    height, width = images.shape[-2:]
    x = torch.from_numpy(images)
    maps, embedded = [], []
    for i in range(0, len(x), batch_size):
        features = patch_features(model.backbone, x[i : i + batch_size]).permute(0, 3, 1, 2)
        up = distance_maps(model.bank, features, (height, width))
        maps.append(ndimage.gaussian_filter(up, sigma=(0, 4 * height / 256, 4 * width / 256)))
        embedded.append(pooled(features, "median"))
    if not maps:
        return np.empty((0, height, width), dtype=np.float32), np.empty((0, model.bank.shape[1]), dtype=np.float32)
    return np.concatenate(maps), np.concatenate(embedded)


def patchcore_maps(model: PatchCore, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """(N, H, W) anomaly maps: nearest-neighbour distances in the bank, upsampled and smoothed."""
    return patchcore_outputs(model, images, batch_size)[0]


def save_patchcore(model: PatchCore, file: Path) -> None:
    torch.save({"arch": model.arch, "backbone": model.backbone.state_dict(), "bank": model.bank}, file)


def load_patchcore(file: Path) -> PatchCore:
    saved = torch.load(file, map_location="cpu", weights_only=True)
    arch = saved.get("arch", "resnet18")
    backbone = TORCHVISION_BACKBONES[arch](in_channels=3)
    backbone.load_state_dict(saved["backbone"])
    return PatchCore(backbone.eval(), saved["bank"], arch)
