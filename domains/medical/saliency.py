"""Grad-CAM (Selvaraju et al. 2017): where a CNN's evidence for a class lies in the image."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from domains.common.vision import ResNet


def grad_cam(model: ResNet, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Maps in [0, 1] at image resolution, (n, H, W): the last stage's activations weighted by the
    mean gradient of each image's class logit, positive part, each map scaled to its maximum."""
    model.eval()
    x = torch.from_numpy(images)
    with torch.enable_grad():
        last = model.features(x)[-1].detach().requires_grad_(True)
        logits = model.head(last)
        logits.gather(1, torch.from_numpy(np.asarray(classes, dtype=np.int64))[:, None]).sum().backward()
    assert last.grad is not None  # filled by backward()
    weights = last.grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * last).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12)[:, None, None]
    return (cam / peak).detach().numpy()
