"""The classical baseline: a Gaussian per patch position over PCA features of raw patches (PaDiM's
recipe with scikit-learn's PCA in place of a pretrained CNN).

Each image is standardised (its own mean and std: lighting varies between parts), cut into
p x p patches at stride p / 2, and each patch projected on the leading principal components of
good patches. Every patch position gets its own mean and Ledoit-Wolf covariance over the good
training images; a patch's anomaly score is its Mahalanobis distance there. The patch grid's
scores are upsampled to the image (bilinear), so the map has the image's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.covariance import ledoit_wolf
from sklearn.decomposition import PCA


@dataclass
class PatchGaussian:
    patch: int
    pca: PCA
    means: np.ndarray  # (positions, k)
    precisions: np.ndarray  # (positions, k, k)

    @property
    def stride(self) -> int:
        return max(1, self.patch // 2)


def _standardised(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).float() / 255.0
    return (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-3)


def _patches(images: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """(N, positions, C * patch * patch) patches of standardised images."""
    return F.unfold(_standardised(images), patch, stride=stride).transpose(1, 2).numpy()


def fit_patch_gaussian(
    images: np.ndarray, patch: int, components: int, patches_per_image: int, seed: int
) -> PatchGaussian:
    """Fit on good uint8 images (N, C, H, W) of one size."""
    rng = np.random.default_rng(seed)
    stride = max(1, patch // 2)
    patches = _patches(images, patch, stride)
    n, positions, dim = patches.shape
    sample = patches[np.arange(n)[:, None], rng.integers(0, positions, (n, min(patches_per_image, positions)))]
    pca = PCA(min(components, dim, len(sample.reshape(-1, dim))), random_state=seed).fit(sample.reshape(-1, dim))
    features = pca.transform(patches.reshape(-1, dim)).reshape(n, positions, -1)
    means = features.mean(axis=0)
    precisions = np.stack([np.linalg.pinv(ledoit_wolf(features[:, i])[0]) for i in range(positions)])
    return PatchGaussian(patch, pca, means, precisions)


def patch_gaussian_outputs(
    model: PatchGaussian, images: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) anomaly maps (per-position Mahalanobis distances, upsampled to the image) and (N, k)
    embeddings of uint8 images (N, C, H, W), from one projection of their patches.

    The embedding (drift) is the PCA features of every patch averaged over positions: the mean, where the
    deep models take the median (vision.pooled): these are linear projections of standardised patches, whose
    median sits near zero for most images (on Magnetic-Tile it missed a batch of chest X-rays that the mean
    blocks)."""
    height, width = images.shape[-2:]
    rows = (height - model.patch) // model.stride + 1
    cols = (width - model.patch) // model.stride + 1
    maps, embedded = [], []
    for start in range(0, len(images), batch_size):
        patches = _patches(images[start : start + batch_size], model.patch, model.stride)
        n, positions, dim = patches.shape
        features = model.pca.transform(patches.reshape(-1, dim)).reshape(n, positions, -1)
        d = features - model.means
        distance = np.sqrt(np.maximum(np.einsum("npk,pkj,npj->np", d, model.precisions, d), 0))
        grid = torch.from_numpy(distance.reshape(n, 1, rows, cols)).float()
        maps.append(F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)[:, 0].numpy())
        embedded.append(features.mean(axis=1))
    if not maps:
        return np.empty((0, height, width), dtype=np.float32), np.empty((0, model.pca.n_components_))
    return np.concatenate(maps), np.concatenate(embedded)


def patch_gaussian_maps(model: PatchGaussian, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, H, W) anomaly maps: per-position Mahalanobis distances, upsampled to the image."""
    return patch_gaussian_outputs(model, images, batch_size)[0]
