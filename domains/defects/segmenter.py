"""The torch model: a small fully convolutional network that segments anomalies pasted on good
images (DRAEM's discriminative half, without its reconstruction network), trained from scratch
through the shared trainer.

With `align` (parts at any pose; pose.py), each image is first turned and centred to its object's
canonical pose and the logits turned back: the network learns one pose of the part. With `flip_average`,
an image's anomaly map is the mean of the maps of the image and its three flips (the flips training
augments with), each flipped back; with `shift_average`, also of the image shifted by half a logit cell (2 px)
down, right and both, each shifted back: the logits are at 1/4 resolution, and where their grid falls on a
defect moves the map (on Magnetic-Tile one 2 px shift alone took the pixel AUROC from 0.896 to anywhere from
0.891 to 0.905), so averaging the four phases removes that grid's noise. Each is set at the end of training
where it raises the validation score.

Input: the image standardised by its own mean and std (lighting varies between parts) plus two
coordinate channels (where on the part a pixel is: an edge may look unlike the middle and still
be normal). Encoder: a stride-2 stem and three residual stages (the shared BasicBlock) down to 1/16
of the input, for context; decoder: upsample and merge with the 1/8 and 1/4 features, one logit
per pixel at 1/4 resolution, upsampled to the input. Scoring at 1/4 resolution keeps it cheap on
a CPU; thin defects still light up their neighbourhood.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from domains.common.contract import TrainEnv
from domains.common.trainer import Batches, History, fit
from domains.common.vision import BasicBlock, pooled, to_unit
from domains.defects.anomalies import paste_anomalies
from domains.defects.metrics import average_precision
from domains.defects.params import DEFAULT_FILLS, AnomalyFill, DefectsTrainParams
from domains.defects.pose import alignable, from_canonical, to_canonical

if TYPE_CHECKING:
    from domains.defects.neighbours import NeighbourBank

FLIPS = ((3,), (2,), (2, 3))  # flip_average: mirrored left-right, upside down, both (dims of N, C, H, W)
SHIFTS = ((0, 2), (2, 0), (2, 2))  # shift_average: pixels down and right, half the logits' 1/4-resolution cell


def _conv(inp: int, out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True))


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class Segmenter(nn.Module):
    """(N, C, H, W) images, uint8 or [0, 1] floats -> (N, 1, H, W) anomaly logits."""

    def __init__(
        self,
        channels: int,
        width: int = 16,
        align: bool = False,
        flip_average: bool = False,
        shift_average: bool = False,
    ):
        super().__init__()
        self.channels, self.width, self.align = channels, width, align
        self.flip_average, self.shift_average = flip_average, shift_average
        self.stem = _conv(channels + 2, width, 2)  # 1/2
        self.stage1 = BasicBlock(width, 2 * width, 2)  # 1/4
        self.stage2 = BasicBlock(2 * width, 4 * width, 2)  # 1/8
        self.stage3 = BasicBlock(4 * width, 8 * width, 2)  # 1/16
        self.merge2 = _conv(12 * width, 4 * width)
        self.merge1 = _conv(6 * width, 2 * width)
        self.head = nn.Conv2d(2 * width, 1, 1)
        self.neighbours: NeighbourBank | None = None  # train.neighbour_distance's bank (neighbours.py)
        self.tile_neighbours: NeighbourBank | None = None  # its bank of aspect-kept tiles (prepare.tiles)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder's 1/4, 1/8 and 1/16 feature maps of images in [0, 1]."""
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-3)
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
        quarter = self.stage1(self.stem(torch.cat([x, ys, xs], 1)))
        eighth = self.stage2(quarter)
        return quarter, eighth, self.stage3(eighth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_and_features(x)[0]

    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The anomaly logits and the encoder's deepest (1/16) features, from one pass (scoring needs both)."""
        h, w = x.shape[-2:]
        x, pose = to_canonical(to_unit(x)) if self.align else (to_unit(x), None)
        quarter, eighth, sixteenth = self.encode(x)
        merged = self.merge2(torch.cat([_up(sixteenth, eighth), eighth], 1))
        logits = self.head(self.merge1(torch.cat([_up(merged, quarter), quarter], 1)))
        if pose is None:
            return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False), sixteenth
        return from_canonical(logits, pose, (h, w)), sixteenth

    def probabilities_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H, W) anomaly probabilities and the deepest features of the images as they are; with
        `flip_average` and `shift_average`, the probabilities are the mean over the image's views (flips, half-cell
        shifts), each mapped back, run as one batch."""
        views = self.views()
        if len(views) == 1:
            logits, features = self.logits_and_features(x)
            return torch.sigmoid(logits.float())[:, 0], features
        n, x = x.shape[0], to_unit(x)
        logits, features = self.logits_and_features(torch.cat([_flip(_shift(x, s), f) for s, f in views]))
        p = torch.sigmoid(logits.float())
        back = [_unshift(_flip(p[k * n : (k + 1) * n], f), s) for k, (s, f) in enumerate(views)]
        return (back[0] + sum(back[1:]))[:, 0] / len(views), features[:n]

    def views(self) -> list[tuple[tuple[int, int], tuple[int, ...]]]:
        """(shift, flip) of each view a map averages over, the image as it is first."""
        shifts = ((0, 0), *SHIFTS) if self.shift_average else ((0, 0),)
        flips = ((), *FLIPS) if self.flip_average else ((),)
        return [(s, f) for s in shifts for f in flips]


def _flip(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return x.flip(dims) if dims else x


def _shift(x: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
    """The image moved `shift` pixels down and right, its top and left edges repeated."""
    (dy, dx), (h, w) = shift, x.shape[-2:]
    return F.pad(x, (dx, 0, dy, 0), mode="replicate")[..., :h, :w] if dy or dx else x


def _unshift(x: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
    """A shifted image's map moved back, its bottom and right edges repeated."""
    dy, dx = shift
    return F.pad(x, (0, dx, 0, dy), mode="replicate")[..., dy:, dx:] if dy or dx else x


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (DRAEM's; most pixels are easy background) plus a soft Dice term over the batch."""
    logits = logits.float()
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
    p_true = p * masks + (1 - p) * (1 - masks)
    focal = (ce * (1 - p_true) ** gamma).mean()
    dice = 1 - (2 * (p * masks).sum() + 1) / (p.sum() + masks.sum() + 1)
    return 10 * focal + 0.5 * dice


@torch.no_grad()
def segmenter_outputs(model: Segmenter, images: torch.Tensor, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) anomaly probabilities and (N, D) embeddings of uint8 images (N, C, H, W), from one pass
    (with `flip_average`, the image and its flips in one batch).

    The embedding (drift) is the encoder's deepest (1/16) features, median over positions."""
    model.eval()
    device = next(model.parameters()).device
    maps, embedded = [], []
    step = max(1, batch_size // max(1, len(model.views()) // 4))  # a pass holds each image's views: 4 x 32 at most
    for i in range(0, len(images), step):
        probabilities, deepest = model.probabilities_and_features(images[i : i + step].to(device))
        maps.append(probabilities.cpu())
        embedded.append(pooled(deepest, "median"))
    if not maps:
        return np.empty((0, *images.shape[-2:]), dtype=np.float32), np.empty((0, 8 * model.width), dtype=np.float32)
    return torch.cat(maps).numpy(), np.concatenate(embedded)


@torch.no_grad()
def segmenter_embeddings(model: Segmenter, images: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """(N, D) the embeddings of segmenter_outputs from the images as they are alone: the views average the maps,
    not the embeddings, so the drift reference of the training images costs one pass instead of 4 or 16."""
    model.eval()
    device = next(model.parameters()).device
    embedded = [
        pooled(model.logits_and_features(images[i : i + batch_size].to(device))[1], "median")
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(embedded) if embedded else np.empty((0, 8 * model.width), dtype=np.float32)


def anomaly_maps(model: Segmenter, images: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """(N, H, W) anomaly probabilities of uint8 images (N, C, H, W)."""
    return segmenter_outputs(model, images, batch_size)[0]


def validation_set(
    images: torch.Tensor, copies: int, seed: int, foreground: bool = False, fills: Sequence[AnomalyFill] = DEFAULT_FILLS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out good images as they are and with pasted anomalies (seeded; `foreground`: on the object only),
    and their masks."""
    generator = torch.Generator().manual_seed(seed)
    clean = to_unit(images)
    pasted, masks = zip(*(paste_anomalies(clean, 1.0, generator, foreground, fills) for _ in range(copies)))
    return torch.cat([clean, *pasted]), torch.cat([torch.zeros_like(masks[0]), *masks])


def _random_crops(x: torch.Tensor, crop: int) -> torch.Tensor:
    """One random square crop (the same place) for the whole batch, from torch's seeded RNG."""
    top, left = (torch.randint(0, s - crop + 1, (1,)).item() for s in x.shape[-2:])
    return x[..., top : top + crop, left : left + crop]


def train_segmenter(
    train_images: np.ndarray, val_images: np.ndarray, p: DefectsTrainParams, seed: int, env: TrainEnv
) -> tuple[Segmenter, History]:
    """Fit on good images with pasted anomalies; keep the epoch with the best validation pixel AP."""
    torch.manual_seed(seed)  # the weights' initialisation
    images = torch.from_numpy(train_images)
    align = p.align is True or (p.align == "auto" and alignable(to_unit(images)))
    model = Segmenter(images.shape[1], p.width, align)
    val_x, val_masks = validation_set(
        torch.from_numpy(val_images), p.val_anomalies, seed + 1, p.foreground, p.anomaly_fills
    )

    def augment(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_unit(batch[0])
        if p.crop is not None:
            x = _random_crops(x, p.crop)
        flips = torch.rand(2)
        x = x.flip(3) if flips[0] < 0.5 else x
        x = x.flip(2) if flips[1] < 0.5 else x
        if p.rotate:  # the whole batch a quarter turn 0-3 times: a part at any pose is normal
            x = torch.rot90(x, int(torch.randint(0, 4, (1,)).item()), (2, 3))
        return paste_anomalies(x, p.anomaly_share, foreground=p.foreground, fills=p.anomaly_fills)

    def score(m: nn.Module) -> float:  # on every other pixel each way: the maps are smooth, the AP 4x cheaper
        maps = anomaly_maps(cast(Segmenter, m), val_x)[:, ::2, ::2]
        return average_precision(val_masks.numpy()[:, 0, ::2, ::2].ravel() > 0.5, maps.ravel())

    history = fit(
        model,
        Batches(len(images), lambda rows: (images[rows], images[rows])),
        segmentation_loss,
        score,
        p,
        seed,
        env.checkpoint_dir / "segmenter.ckpt",
        env.fingerprint,
        name="segmenter",
        augment=augment,
        channels_last=True,
        cpu_mixed_precision=True,
    )
    model = model.cpu()
    for setting in ("flip_average", "shift_average"):  # flips first: the shifts are judged with flips as chosen
        chosen = getattr(p, setting)
        setattr(model, setting, chosen is True or (chosen == "auto" and _averaging_helps(model, setting, score)))
    return model, history


def _averaging_helps(model: Segmenter, setting: str, score: Callable[[nn.Module], float]) -> bool:
    """Whether averaging the maps over more views (`setting` on) raises the validation score of the trained model."""
    setattr(model, setting, False)
    plain = score(model)
    setattr(model, setting, True)
    averaged = score(model)
    what = setting.replace("_", " ")
    print(f"[segmenter] {what}: validation pixel AP {plain:.4f} -> {averaged:.4f}", file=sys.stderr, flush=True)
    return averaged > plain


def save_segmenter(model: Segmenter, file: Path) -> None:
    torch.save(
        {
            "channels": model.channels,
            "width": model.width,
            "align": model.align,
            "flip_average": model.flip_average,
            "shift_average": model.shift_average,
            "state": model.state_dict(),
            **({"neighbours": vars(model.neighbours)} if model.neighbours is not None else {}),
            **({"tile_neighbours": vars(model.tile_neighbours)} if model.tile_neighbours is not None else {}),
        },
        file,
    )


def load_segmenter(file: Path) -> Segmenter:
    saved = torch.load(file, map_location="cpu", weights_only=True)
    # saved before align, flip_average or shift_average: off
    model = Segmenter(
        saved["channels"],
        saved["width"],
        saved.get("align", False),
        saved.get("flip_average", False),
        saved.get("shift_average", False),
    )
    model.load_state_dict(saved["state"])
    from domains.defects.neighbours import NeighbourBank  # it builds on this module

    if "neighbours" in saved:
        model.neighbours = NeighbourBank(**saved["neighbours"])
    if "tile_neighbours" in saved:
        model.tile_neighbours = NeighbourBank(**saved["tile_neighbours"])
    return model.eval()
