"""DRAEM (Zavrtanik, Kristan, Skočaj, ICCV 2021) in plain torch, trained from scratch through the shared trainer.

Two sub-networks, trained together on good images with simulated anomalies (perlin.py):
- reconstructive: an encoder-decoder without skip connections (4 poolings) that learns to give back
  the good image under an anomaly; loss L2 + SSIM against the clean image;
- discriminative: a U-Net (5 poolings, skip connections) on [image, reconstruction] that segments
  where the two differ in a way the training anomalies did; focal loss on the anomaly mask.
The anomaly map is the discriminative network's probability; an image's score the maximum of the
map after a mean filter (metrics.image_scores). The paper's widths are 128 (reconstructive) and 64
(discriminative) at 256 px for 700 epochs on a GPU; `train.draem_width` sets the first (the second is
half of it) and `train.draem_size` the resolution, so that a CPU run fits (see the README's costs).
Images of any size are padded (edge values) to a multiple of 32 and the outputs cropped back.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from domains.common.contract import TrainEnv
from domains.common.trainer import Batches, History, fit
from domains.common.vision import pooled, to_unit
from domains.defects.metrics import average_precision
from domains.defects.params import DefectsTrainParams
from domains.defects.perlin import draem_anomalies

RECON_POOLS, DISC_POOLS = 4, 5


def _block(inp: int, out: int) -> nn.Sequential:
    """DRAEM's unit: two 3x3 convolutions, each with batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(inp, out, 3, padding=1),
        nn.BatchNorm2d(out),
        nn.ReLU(inplace=True),
        nn.Conv2d(out, out, 3, padding=1),
        nn.BatchNorm2d(out),
        nn.ReLU(inplace=True),
    )


def _up(inp: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        nn.Conv2d(inp, out, 3, padding=1),
        nn.BatchNorm2d(out),
        nn.ReLU(inplace=True),
    )


def _padded(x: torch.Tensor, pools: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    step = 2**pools
    ph, pw = -h % step, -w % step
    return (F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x), h, w


class Reconstructive(nn.Module):
    """(N, C, H, W) in [0, 1] -> (N, C, H, W): the image as a good part would look."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width, 8 * width]
        self.encoder = nn.ModuleList(
            [_block(channels, widths[0])] + [_block(widths[i - 1], widths[i]) for i in range(1, RECON_POOLS + 1)]
        )
        ups, blocks = [], []
        for i in range(RECON_POOLS, 0, -1):  # no skip connections: the bottleneck forgets what is anomalous
            ups.append(_up(widths[i], widths[i]))
            blocks.append(_block(widths[i], widths[i - 1]))
        self.ups, self.blocks = nn.ModuleList(ups), nn.ModuleList(blocks)
        self.out = nn.Conv2d(widths[0], channels, 3, padding=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck (1/16 of the input) of an input padded to a multiple of 16."""
        for i, block in enumerate(self.encoder):
            x = block(F.max_pool2d(x, 2) if i else x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.with_bottleneck(x)[0]

    def with_bottleneck(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reconstruction and the bottleneck it came from (the drift check's embedding)."""
        x, h, w = _padded(x, RECON_POOLS)
        bottleneck = x = self.encode(x)
        for up, block in zip(self.ups, self.blocks):
            x = block(up(x))
        return self.out(x)[..., :h, :w], bottleneck


class Discriminative(nn.Module):
    """(N, 2C, H, W) [image, reconstruction] -> (N, 1, H, W) anomaly logits (a U-Net)."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width, 8 * width, 8 * width]
        self.encoder = nn.ModuleList(
            [_block(2 * channels, widths[0])] + [_block(widths[i - 1], widths[i]) for i in range(1, DISC_POOLS + 1)]
        )
        ups, blocks = [], []
        for i in range(DISC_POOLS, 0, -1):
            ups.append(_up(widths[i], widths[i - 1]))
            blocks.append(_block(2 * widths[i - 1], widths[i - 1]))
        self.ups, self.blocks = nn.ModuleList(ups), nn.ModuleList(blocks)
        self.out = nn.Conv2d(widths[0], 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = _padded(x, DISC_POOLS)
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        for up, block, skip in zip(self.ups, self.blocks, reversed(skips[:-1])):
            x = block(torch.cat([up(x), skip], 1))
        return self.out(x)[..., :h, :w]


class Draem(nn.Module):
    """Images (uint8, or floats in [0, 1]) -> (reconstruction, anomaly logits), both at the input's size.

    `size`: the resolution both sub-networks work at (None: the input's); maps come back at the input's.
    """

    def __init__(self, channels: int, width: int, size: int | None = None):
        super().__init__()
        self.channels, self.width, self.size = channels, width, size
        self.reconstructive = Reconstructive(channels, width)
        self.discriminative = Discriminative(channels, max(width // 2, 4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reconstruction, logits, _ = self.outputs(x)
        return reconstruction, logits

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reconstruction, the anomaly logits and the reconstructive bottleneck, from one pass."""
        x = self.resize(to_unit(x))
        reconstruction, bottleneck = self.reconstructive.with_bottleneck(x)
        return reconstruction, self.discriminative(torch.cat([x, reconstruction], 1)), bottleneck

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is None or x.shape[-2:] == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)


def _gaussian(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0
) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) of two (N, C, H, W) batches: Gaussian window, C1 = (0.01 L)^2,
    C2 = (0.03 L)^2; edges padded by reflection (a constant image stays constant up to its border).

    Always in float32: under mixed precision the blurs would run in bf16 / fp16, whose variances of
    near-equal images go negative and the ratio's gradient to NaN."""
    with torch.autocast(x.device.type, enabled=False):
        return _ssim(x.float(), y.float(), window, sigma, data_range)


def _ssim(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float, data_range: float) -> torch.Tensor:
    # (co)variances of the images less their means: the same values, without float32's cancellation
    xc, yc = x - x.mean(dim=(2, 3), keepdim=True), y - y.mean(dim=(2, 3), keepdim=True)
    maps = torch.cat([x, y, xc, yc, xc * xc, yc * yc, xc * yc], 1)
    # the 2-d Gaussian is separable: a column then a row pass, all seven maps in one grouped convolution each
    # (a 2-d window costs 5.5x the arithmetic and, for a 64 px reconstruction, most of DRAEM's step on a CPU)
    groups = maps.shape[1]
    g = _gaussian(window, sigma, x.device)
    pad = min(window // 2, x.shape[-1] - 1, x.shape[-2] - 1)
    maps = F.pad(maps, (pad, pad, pad, pad), mode="reflect") if pad else maps
    maps = F.conv2d(
        maps, g.view(1, 1, window, 1).expand(groups, 1, window, 1), groups=groups, padding=(window // 2 - pad, 0)
    )
    maps = F.conv2d(
        maps, g.view(1, 1, 1, window).expand(groups, 1, 1, window), groups=groups, padding=(0, window // 2 - pad)
    )
    mx, my, mxc, myc, sxx, syy, sxy = maps.chunk(7, 1)
    vx, vy, cov = sxx - mxc**2, syy - myc**2, sxy - mxc * myc
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return (((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()


def focal_loss(logits: torch.Tensor, masks: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """DRAEM's focal loss (Lin et al. 2017) per pixel: easy background pixels count little."""
    logits = logits.float()
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
    p_true = p * masks + (1 - p) * (1 - masks)
    return (ce * (1 - p_true) ** gamma).mean()


def draem_loss(
    output: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor, focal_weight: float = 1.0, dice_weight: float = 0.0
) -> torch.Tensor:
    """L2 + (1 - SSIM) of the reconstruction against the clean image, plus focal loss of the segmentation
    (DRAEM's: weights 1, no Dice term; a short CPU run learns to segment sooner with more weight on it).

    `target` is [clean image, mask] along channels (the shared trainer passes one target tensor).
    """
    reconstruction, logits = output
    clean, masks = target[:, :-1], target[:, -1:]
    size = reconstruction.shape[-2:]
    if clean.shape[-2:] != size:  # the model works at train.draem_size
        clean = F.interpolate(clean, size=size, mode="bilinear", align_corners=False, antialias=True)
        masks = (F.interpolate(masks, size=size, mode="bilinear", align_corners=False) > 0.5).float()
    reconstruction = reconstruction.float()
    loss = (
        F.mse_loss(reconstruction, clean) + (1 - ssim(reconstruction, clean)) + focal_weight * focal_loss(logits, masks)
    )
    if dice_weight:
        p = torch.sigmoid(logits.float())
        loss = loss + dice_weight * (1 - (2 * (p * masks).sum() + 1) / (p.sum() + masks.sum() + 1))
    return loss


@torch.no_grad()
def draem_outputs(model: Draem, images: torch.Tensor, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) anomaly probabilities of uint8 images (N, C, H, W), at the images' own size, and their (N, D)
    embeddings (drift: the reconstructive network's bottleneck, median over positions), from one pass."""
    model.eval()
    device = next(model.parameters()).device
    maps, embedded = [], []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device)
        _, logits, bottleneck = model.outputs(x)
        logits = logits.float()
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        maps.append(torch.sigmoid(logits)[:, 0].cpu())
        embedded.append(pooled(bottleneck, "median"))
    if not maps:
        return np.empty((0, *images.shape[-2:]), dtype=np.float32), np.empty((0, 8 * model.width), dtype=np.float32)
    return torch.cat(maps).numpy(), np.concatenate(embedded)


def draem_maps(model: Draem, images: torch.Tensor, batch_size: int = 16) -> np.ndarray:
    """(N, H, W) anomaly probabilities of uint8 images (N, C, H, W), at the images' own size."""
    return draem_outputs(model, images, batch_size)[0]


def train_draem(
    train_images: np.ndarray, val_images: np.ndarray, p: DefectsTrainParams, seed: int, env: TrainEnv
) -> tuple[Draem, History]:
    """Fit on good images with DRAEM anomalies; keep the epoch with the best validation pixel AP
    (held-out good images with anomalies drawn once, seeded)."""
    torch.manual_seed(seed)
    images = torch.from_numpy(train_images)
    model = Draem(images.shape[1], p.draem_width, p.draem_size)
    sources, foreground = tuple(p.draem_sources), p.draem_foreground
    val = to_unit(torch.from_numpy(val_images))
    generator = torch.Generator().manual_seed(seed + 1)
    pasted, masks = zip(*(draem_anomalies(val, 1.0, sources, foreground, generator) for _ in range(p.val_anomalies)))
    val_x = torch.cat([val, *pasted])
    val_masks = torch.cat([torch.zeros_like(masks[0]), *masks])

    def augment(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_unit(batch[0])
        flips = torch.rand(2)
        x = x.flip(3) if flips[0] < 0.5 else x
        x = x.flip(2) if flips[1] < 0.5 else x
        x = model.resize(x)  # anomalies drawn at the resolution the networks see
        pasted_x, m = draem_anomalies(x, p.anomaly_share, sources, foreground)
        return pasted_x, torch.cat([x, m], 1)

    def score(m: nn.Module) -> float:
        assert isinstance(m, Draem)
        return average_precision(val_masks.numpy().ravel() > 0.5, draem_maps(m, val_x).ravel())

    loss = partial(draem_loss, focal_weight=p.draem_focal_weight, dice_weight=p.draem_dice_weight)
    history = fit(
        model,
        Batches(len(images), lambda rows: (images[rows], images[rows])),
        loss,
        score,
        p,
        seed,
        env.checkpoint_dir / "draem.ckpt",
        env.fingerprint,
        name="draem",
        augment=augment,
        channels_last=True,
        cpu_mixed_precision=True,
    )
    return model.cpu(), history


def save_draem(model: Draem, file: Path) -> None:
    torch.save(
        {"channels": model.channels, "width": model.width, "size": model.size, "state": model.state_dict()}, file
    )


def load_draem(file: Path) -> Draem:
    saved = torch.load(file, map_location="cpu", weights_only=True)
    model = Draem(saved["channels"], saved["width"], saved["size"])
    model.load_state_dict(saved["state"])
    return model.eval()
