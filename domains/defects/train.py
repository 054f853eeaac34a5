"""Train every model on the good training images, and set each one's threshold on held-out good images.

Models (all score anomaly maps at the prepared resolution; see their modules):
- patch_gaussian: the scikit-learn baseline (a Gaussian per patch position over PCA features);
- segmenter: a torch model that segments pasted anomalies, through the shared trainer;
- draem: DRAEM's reconstructive and discriminative sub-networks, through the shared trainer;
- patchcore: only with `train.backbone_weights` (a local ImageNet ResNet-18 or Wide ResNet-50-2 file).
An image's score is the maximum of its smoothed map (a segmenter with `train.neighbour_distance` adds
its nearest-neighbour distance, and with `prepare.tiles` its tiles' too, neighbours.py); a model's threshold is the
`train.threshold_quantile` of the held-out good images' scores. With several categories (and
`train.per_category`), each kind is fitted once per category and routed to by image (routed.py).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import torch

from domains.common.contract import TrainEnv
from domains.common.errors import DataError
from domains.common.items import SPLIT
from domains.common.trainer import seed_everything
from domains.defects.baseline import fit_patch_gaussian, patch_gaussian_outputs
from domains.defects.draem import draem_outputs, load_draem, save_draem, train_draem
from domains.defects.loaders import CATEGORY
from domains.defects.metrics import image_scores, threshold_on_good
from domains.defects.neighbours import fit_bank, fit_tile_bank, with_neighbours
from domains.defects.params import DefectsParams
from domains.defects.patchcore import (
    fit_patchcore,
    load_backbone,
    load_patchcore,
    patchcore_outputs,
    save_patchcore,
)
from domains.defects.pipeline import IMAGES, ITEMS, TILE_OWNER, TILES
from domains.defects.routed import (
    Routed,
    is_routed,
    load_routed,
    routed_file,
    save_router,
    save_scales,
    thumbnails,
)
from domains.defects.segmenter import (
    Segmenter,
    load_segmenter,
    save_segmenter,
    segmenter_embeddings,
    segmenter_outputs,
    train_segmenter,
)
from domains.defects.tiles import Tiles

BASELINE, SEGMENTER, DRAEM, PATCHCORE = "patch_gaussian", "segmenter", "draem", "patchcore"
TORCH_MODELS = (SEGMENTER, DRAEM)  # trained epoch by epoch: each has a training history
THRESHOLDS, TIMES, HISTORY = "thresholds.json", "times.json", "history.json"
MIN_SCALE = 1e-12  # a category whose held-out maps are all zero still divides by something
SUFFIX = {BASELINE: ".joblib", SEGMENTER: ".pt", DRAEM: ".pt", PATCHCORE: ".pt"}


def model_names(p: DefectsParams) -> list[str]:
    return [*p.train.models, *([PATCHCORE] if p.train.backbone_weights else [])]


def model_file(train_dir: Path, name: str) -> Path:
    return train_dir / f"{name}{SUFFIX[name]}"


def load_model(train_dir: Path, name: str) -> Any:
    """The model called `name`: one model, or one per category behind a router (domains/defects/routed.py)."""
    loader = {BASELINE: joblib.load, SEGMENTER: load_segmenter, DRAEM: load_draem, PATCHCORE: load_patchcore}[name]
    file = model_file(train_dir, name)
    return load_routed(train_dir, file, loader, name) if is_routed(train_dir) else loader(file)


def maps_and_embeddings(name: str, model: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) anomaly maps and (N, D) embeddings (the drift check's) of uint8 images (N, C, H, W) by the
    model called `name`, from one pass: scoring needs both, and the reference is embedded by the same code."""
    if isinstance(model, Routed):
        return model.outputs(images, lambda one, x: maps_and_embeddings(name, one, x))
    if name == BASELINE:
        return patch_gaussian_outputs(model, images)
    if name == SEGMENTER:
        return segmenter_outputs(model, torch.from_numpy(images))
    if name == DRAEM:
        return draem_outputs(model, torch.from_numpy(images))
    return patchcore_outputs(model, images)


def score_maps(name: str, model: Any, images: np.ndarray) -> np.ndarray:
    """(N, H, W) anomaly maps of uint8 images (N, C, H, W) by the model called `name`."""
    return maps_and_embeddings(name, model, images)[0]


def model_image_scores(
    model: Any, images: np.ndarray, maps: np.ndarray, pool: float, tiles: Tiles | None = None
) -> np.ndarray:
    """(N,) image scores of uint8 images (N, C, H, W) from their maps by `model`: the maximum of the box-filtered
    map, plus a segmenter's nearest-neighbour distances where it has banks (neighbours.py; `tiles`: the images'
    aspect-kept tiles, which a tile bank needs)."""
    scores = image_scores(maps, pool)
    return with_neighbours(model, images, scores, pool, tiles) if isinstance(model, Segmenter) else scores


def needs_tiles(model: Any) -> bool:
    """Whether `model` scores the images' aspect-kept tiles too (a segmenter trained with prepare.tiles)."""
    return isinstance(model, Segmenter) and model.tile_neighbours is not None


def embeddings(name: str, model: Any, images: np.ndarray) -> np.ndarray:
    """(N, D) embeddings of uint8 images (N, C, H, W) by the model called `name` (the drift check's); a
    segmenter's without its maps' views (segmenter_embeddings)."""
    if isinstance(model, Routed):  # each image by its category's model; zero maps stand in for the unused maps
        return model.outputs(images, lambda one, x: (np.zeros((len(x), 1, 1), np.float32), embeddings(name, one, x)))[1]
    if isinstance(model, Segmenter):
        return segmenter_embeddings(model, torch.from_numpy(images))
    return maps_and_embeddings(name, model, images)[1]


def split_images(prepared_dir: Path, split: str) -> np.ndarray:
    images = np.load(prepared_dir / IMAGES, mmap_mode="r")
    rows = np.flatnonzero(pd.read_parquet(prepared_dir / ITEMS)[SPLIT].to_numpy() == split)
    return np.ascontiguousarray(images[rows])


def split_tiles(prepared_dir: Path, split: str) -> Tiles | None:
    """The aspect-kept tiles of a split's images (prepare.tiles), owners counting along the split; None without."""
    if not (prepared_dir / TILES).exists():
        return None
    rows = np.flatnonzero(pd.read_parquet(prepared_dir / ITEMS)[SPLIT].to_numpy() == split)
    every = Tiles(np.load(prepared_dir / TILES, mmap_mode="r"), np.load(prepared_dir / TILE_OWNER))
    return every.of(rows)


def split_categories(prepared_dir: Path, split: str) -> np.ndarray:
    items = pd.read_parquet(prepared_dir / ITEMS)
    return items[CATEGORY].to_numpy()[items[SPLIT].to_numpy() == split]


def train_models(p: DefectsParams, prepared_dir: Path, out_dir: Path, env: TrainEnv) -> None:
    train, val = split_images(prepared_dir, "train"), split_images(prepared_dir, "val")
    train_tiles, val_tiles = split_tiles(prepared_dir, "train"), split_tiles(prepared_dir, "val")
    train_category, val_category = split_categories(prepared_dir, "train"), split_categories(prepared_dir, "val")
    t = p.train
    # Deterministic mode's first call imports torch's compiler stack (seconds): not inside a timed fit.
    seed_everything(p.seed, t.deterministic, t.num_threads)
    # The backbone file is read first: a wrong or truncated file stops the stage before any model is fit.
    backbone = load_backbone(t.backbone_weights) if t.backbone_weights else None  # PatchCore only when set
    fitters: dict[str, Callable[[np.ndarray, np.ndarray, TrainEnv], Any]] = {
        BASELINE: lambda train, val, env: fit_patch_gaussian(
            train, t.baseline_patch, t.baseline_components, t.baseline_patches_per_image, p.seed
        ),
        SEGMENTER: lambda train, val, env: _fit_segmenter(train, val, train_tiles, val_tiles, p, env),
        DRAEM: lambda train, val, env: train_draem(train, val, t, p.seed, env),
        PATCHCORE: lambda train, val, env: fit_patchcore(train, backbone, t.memory_bank, p.seed) if backbone else None,
    }
    savers: dict[str, Callable[[Any, Path], None]] = {
        BASELINE: joblib.dump,
        SEGMENTER: save_segmenter,
        DRAEM: save_draem,
        PATCHCORE: save_patchcore,
    }
    # Which images each fit learns from and is scaled on: per category behind a router, or all of them.
    groups = {"": (np.ones(len(train), bool), np.ones(len(val), bool))}
    categories = list(pd.unique(train_category))
    if t.per_category and len(categories) > 1:
        if t.neighbour_distance and SEGMENTER in t.models:  # a routed model's maps are scaled per category
            raise DataError(
                "train.neighbour_distance: for one segmenter of every image; set train.per_category: false "
                f"(the data has {len(categories)} categories)"
            )
        groups = {c: (train_category == c, val_category == c) for c in categories}
        bank = thumbnails(torch.from_numpy(train)).numpy()
        save_router(out_dir, categories, bank, np.array([categories.index(c) for c in train_category]))
    thresholds, times, histories = {}, {}, {}
    for name in model_names(p):
        times[name], scales = 0.0, {}
        for category, (rows, val_rows) in groups.items():
            _log(f"fit {name} on {rows.sum()} good images{f' of {category}' if category else ''}")
            began = time.perf_counter()
            model = fitters[name](train[rows], val[val_rows], _category_env(env, category))
            times[name] += time.perf_counter() - began
            if name in TORCH_MODELS:
                model, history = model
                histories[f"{name} ({category})" if category else name] = history.to_json()
            file = model_file(out_dir, name)
            savers[name](model, routed_file(file, category) if category else file)
            if category:  # its maps are divided by its own threshold: 1 means 'at the threshold' in every category
                own = image_scores(score_maps(name, model, val[val_rows]), t.score_pool)
                scales[category] = max(threshold_on_good(own, t.threshold_quantile), MIN_SCALE)
        if scales:
            save_scales(out_dir, name, scales)
            model = load_model(out_dir, name)
        val_scores = model_image_scores(model, val, score_maps(name, model, val), t.score_pool, val_tiles)
        thresholds[name] = threshold_on_good(val_scores, t.threshold_quantile)
        _log(
            f"{name}: {times[name]:.1f} s; threshold {thresholds[name]:.4g} "
            f"(quantile {t.threshold_quantile} of {len(val)} held-out good images)"
        )
    (out_dir / THRESHOLDS).write_text(json.dumps(thresholds, indent=2))
    (out_dir / TIMES).write_text(json.dumps(times, indent=2))
    (out_dir / HISTORY).write_text(json.dumps(histories, indent=2))


def _fit_segmenter(
    train: np.ndarray,
    val: np.ndarray,
    train_tiles: Tiles | None,
    val_tiles: Tiles | None,
    p: DefectsParams,
    env: TrainEnv,
) -> tuple[Segmenter, Any]:
    model, history = train_segmenter(train, val, p.train, p.seed, env)
    t = p.train
    if t.neighbour_distance:
        began = time.perf_counter()
        model.neighbours = fit_bank(model, train, val, t.score_pool, t.memory_bank, p.seed)
        _log(f"neighbour bank: {len(model.neighbours.features)} patches kept, {time.perf_counter() - began:.1f} s")
    if t.neighbour_distance and train_tiles is not None and val_tiles is not None:  # prepare.tiles
        began = time.perf_counter()
        model.tile_neighbours = fit_tile_bank(model, train_tiles, val, val_tiles, t.score_pool, t.memory_bank, p.seed)
        _log(
            f"tile bank: {len(model.tile_neighbours.features)} patches kept of {len(train_tiles.images)} tiles, "
            f"{time.perf_counter() - began:.1f} s"
        )
    return model, history


def _category_env(env: TrainEnv, category: str) -> TrainEnv:
    """A category's own checkpoint folder and fingerprint: an interrupted run resumes each category's fit
    from its own checkpoint, never from another category's weights."""
    if not category:
        return env
    folder = env.checkpoint_dir / category
    folder.mkdir(parents=True, exist_ok=True)
    return TrainEnv(folder, f"{env.fingerprint}:{category}")


def _log(message: str) -> None:
    print(f"[defects] {message}", file=sys.stderr, flush=True)
