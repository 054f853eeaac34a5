"""Score every model on the same test images: image and pixel AUROC, per-type AUROC, F1 at the
held-out threshold, inference speed; figures (ROC, score distributions, anomaly-map overlays)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.common.classification import roc_rows
from domains.common.contract import Evaluation
from domains.common.figures import roc_figure, training_curve_figure
from domains.common.items import LABEL, SPLIT
from domains.common.report import WARNING
from domains.defects.figures import comparison_figure, overlay_figure, score_figure
from domains.defects.loaders import CATEGORY, GOOD
from domains.defects.metrics import auroc, image_metrics, per_type_auroc, pixel_auroc
from domains.defects.params import DEFAULT_FILLS, DefectsParams
from domains.defects.pipeline import IMAGES, INFO, ITEMS, MASKS
from domains.defects.routed import Routed
from domains.defects.train import (
    HISTORY,
    SEGMENTER,
    THRESHOLDS,
    TIMES,
    load_model,
    model_image_scores,
    needs_tiles,
    score_maps,
    split_tiles,
)

NEAR_CHANCE = 0.6  # image AUROC under this: the model barely ranks defective above good images
# a source image wider or taller than this (width / height or its inverse) loses most in the square resize
SQUEEZED = 1.5


def evaluate_models(p: DefectsParams, prepared_dir: Path, train_dir: Path, out_dir: Path) -> Evaluation:
    items = pd.read_parquet(prepared_dir / ITEMS)
    info = json.loads((prepared_dir / INFO).read_text())
    test = np.flatnonzero(items[SPLIT].to_numpy() == "test")
    images = np.ascontiguousarray(np.load(prepared_dir / IMAGES, mmap_mode="r")[test])
    masks = np.load(prepared_dir / MASKS, mmap_mode="r")[test].astype(bool)
    tiles = split_tiles(prepared_dir, "test")
    labels = items[LABEL].to_numpy()[test]
    categories = items[CATEGORY].to_numpy()[test]
    by_category = _category_rows(categories)
    defective = labels != GOOD
    thresholds = json.loads((train_dir / THRESHOLDS).read_text())
    times = json.loads((train_dir / TIMES).read_text())

    metrics, maps, scores, aligned, flipped, shifted, kept, tiled = {}, {}, {}, {}, {}, {}, 0, 0
    for name in thresholds:  # the models trained, in training order
        model = load_model(train_dir, name)
        if name == SEGMENTER:
            aligned, flipped = _setting(model, "align"), _setting(model, "flip_average")
            shifted = _setting(model, "shift_average")
            kept = len(model.neighbours.features) if getattr(model, "neighbours", None) is not None else 0
            tiled = info.get("tiles", 0) if needs_tiles(model) else 0
        routing = _routing_metrics(model, images, categories)
        began = time.perf_counter()
        maps[name] = score_maps(name, model, images)
        scores[name] = model_image_scores(model, images, maps[name], p.train.score_pool, tiles)
        seconds = time.perf_counter() - began
        metrics[name] = {
            **image_metrics(defective, scores[name], thresholds[name]),
            **({"pixel_auroc": pixel_auroc(maps[name], masks)} if info["pixel_metrics"] else {}),
            **{f"auroc_{kind}": v for kind, v in per_type_auroc(labels, scores[name], GOOD).items()},
            **_per_category_metrics(by_category, defective, scores[name], maps[name], masks, info["pixel_metrics"]),
            **routing,
            "threshold": thresholds[name],
            "fit_seconds": times[name],
            "images_per_second": len(images) / seconds if seconds > 0 else float("nan"),
        }

    candidate = p.evaluate.candidate if p.evaluate.candidate in maps else next(iter(maps))
    per_type = _per_type_table(labels, scores)
    as_columns = {name: np.column_stack([-s, s]) for name, s in scores.items()}  # the shared ROC reads column 1
    figures = [
        roc_figure(defective.astype(int), as_columns, "Image level: defective vs good test images, all models."),
        score_figure(labels, scores, thresholds, GOOD),
        *(
            overlay_figure(
                candidate if len(by_category) == 1 else f"{candidate}, category {category}",
                images[rows],
                masks[rows] if info["pixel_metrics"] else None,
                labels[rows],
                maps[candidate][rows],
                scores[candidate][rows],
                thresholds[candidate],
                GOOD,
                p.evaluate.overlays,
            )
            for category, rows in by_category.items()
        ),
        comparison_figure(images, masks if info["pixel_metrics"] else None, labels, maps, scores, thresholds, GOOD),
    ]
    history = json.loads((train_dir / HISTORY).read_text())
    for name, curve in history.items():  # a torch model's, or one per category: "segmenter (part)"
        figures.append(training_curve_figure(curve, "validation pixel AP on simulated anomalies", name))
    plots = {
        "roc_curve": roc_rows(defective.astype(int), as_columns),
        "per_type_auroc": per_type.melt(id_vars=["defect_type", "images"], var_name="model", value_name="auroc"),
    }
    tables = {"per_type_auroc": per_type, "test_images": _test_table(items)}
    if len(by_category) > 1:
        tables = {"per_category_auroc": _per_category_table(by_category, defective, metrics), **tables}
    return Evaluation(
        metrics=metrics,
        plots=plots,
        figures=figures,
        tables=tables,
        notes=_notes(p, info, items, metrics, candidate, aligned, flipped, shifted, kept, tiled),
        units=test_units(items.iloc[test], images, scores),
    )


def _category_rows(categories: np.ndarray) -> dict[str, np.ndarray]:
    """The test rows of each category, in the order categories first appear."""
    return {c: np.flatnonzero(categories == c) for c in pd.unique(categories)}


def _routing_metrics(model: object, images: np.ndarray, categories: np.ndarray) -> dict[str, float]:
    """With one model per category: the share of test images routed to their own category's model."""
    if not isinstance(model, Routed):
        return {}
    routed = np.asarray(model.categories)[model.route(images)]
    return {"routed_correctly": float(np.mean(routed == categories))}


def _per_category_metrics(
    by_category: dict[str, np.ndarray],
    defective: np.ndarray,
    scores: np.ndarray,
    maps: np.ndarray,
    masks: np.ndarray,
    pixel: bool,
) -> dict[str, float]:
    """Image (and pixel) AUROC of each category's test images, where the source has more than one category."""
    if len(by_category) < 2:
        return {}
    out = {}
    for category, rows in by_category.items():
        out[f"image_auroc_{category}"] = auroc(defective[rows], scores[rows])
        if pixel:
            out[f"pixel_auroc_{category}"] = pixel_auroc(maps[rows], masks[rows])
    return out


def _per_category_table(rows: dict[str, np.ndarray], defective: np.ndarray, metrics: dict) -> pd.DataFrame:
    """One row per category: its test images and each model's image (and pixel) AUROC on them."""
    table = pd.DataFrame(
        {
            "category": list(rows),
            "good": [int((~defective[r]).sum()) for r in rows.values()],
            "defective": [int(defective[r].sum()) for r in rows.values()],
        }
    )
    for name, m in metrics.items():
        for level in ("image", "pixel"):
            if f"{level}_auroc_{table['category'].iloc[0]}" in m:
                table[f"{name} {level} AUROC"] = [m[f"{level}_auroc_{c}"] for c in rows]
    return table


def test_units(items: pd.DataFrame, images: np.ndarray, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-image scores (the image is the bootstrap unit; label 1: defective), its defect type, category and
    brightness."""
    ids = items["item_id"].astype(str).to_numpy()
    frame = pd.DataFrame({"row": ids, "unit": ids, "label": (items[LABEL].to_numpy() != GOOD).astype(np.int64)})
    for name, s in scores.items():
        frame[f"{name}:p1"] = np.asarray(s, dtype=np.float64)  # a score, not a probability: AUROC needs only its order
    frame["slice:type"] = items[LABEL].astype(str).to_numpy()
    frame["slice:category"] = items[CATEGORY].astype(str).to_numpy()
    frame["slice:brightness"] = images.reshape(len(images), -1).astype(np.float64).mean(axis=1)
    frame["slice:aspect"] = _aspect(items)
    return frame


def _aspect(items: pd.DataFrame) -> np.ndarray:
    """Each source image's width / height, before prepare resizes it to a square."""
    return items["width"].to_numpy(np.float64) / items["height"].to_numpy(np.float64)


def _per_type_table(labels: np.ndarray, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """Image AUROC of each defect type against the good test images, per model."""
    kinds = sorted(set(labels) - {GOOD})
    table = pd.DataFrame({"defect_type": kinds, "images": [int((labels == k).sum()) for k in kinds]})
    for name, s in scores.items():
        table[name] = [per_type_auroc(labels, s, GOOD)[k] for k in kinds]
    return table


def _test_table(items: pd.DataFrame) -> pd.DataFrame:
    counts = items.groupby([SPLIT, LABEL]).size().unstack(SPLIT, fill_value=0)
    return counts.reindex(columns=[s for s in ("train", "val", "test") if s in counts.columns]).reset_index()


def _setting(segmenter: Any, name: str) -> dict[str, bool]:
    """A setting of the segmenter (of each category): align, flip_average, shift_average."""
    models = segmenter.models if isinstance(segmenter, Routed) else {"": segmenter}
    return {category: getattr(model, name) for category, model in models.items()}


def _on_and_off(setting: dict[str, bool]) -> tuple[str, list[str]]:
    """Where a per-category setting is on, in words, and the categories where it is off."""
    on = ", ".join(f"category {c}" for c, value in setting.items() if value and c) or "every image"
    return on, [c for c, value in setting.items() if not value and c]


def _notes(
    p: DefectsParams,
    info: dict,
    items: pd.DataFrame,
    metrics: dict,
    candidate: str,
    aligned: dict[str, bool],
    flipped: dict[str, bool],
    shifted: dict[str, bool],
    neighbour_patches: int,
    tiles: int,
) -> list[str]:
    n = info["images"]
    routed = "routed_correctly" in next(iter(metrics.values()))
    each = " (a model per category: each from its own category's)" if routed else ""
    notes = [
        f"Source: {info['source']}. Models learn from {n['train']} good images only{each}; the decision threshold of each "
        f"is the {p.train.threshold_quantile:.0%} quantile of its scores on {n['val']} held-out good images; all are "
        f"scored on the same {n['test']} test images ({int(((items[SPLIT] == 'test') & (items[LABEL] != GOOD)).sum())} "
        f"defective). Images are resized to {info['image_size']} x {info['image_size']}; anomaly maps and pixel "
        "metrics are at that resolution.",
        f"An image's score is the maximum of its anomaly map after a box filter {p.train.score_pool:.0%} of the "
        "image side wide; f1, precision and recall are those of 'defective' at the threshold.",
    ]
    aspect = _aspect(items[items[SPLIT] == "test"])
    squeezed = int(((aspect > SQUEEZED) | (aspect < 1 / SQUEEZED)).sum())
    if squeezed:
        notes.append(
            f"{squeezed} of the {len(aspect)} test images are wider or taller than {SQUEEZED:g} : 1; the square resize "
            "shrinks them more along their long side, so a thin defect across it (a crack parallel to the short "
            "side) may vanish. The aspect slice shows how each model fares on them."
        )
    categories = list(pd.unique(items[CATEGORY]))
    if len(categories) > 1 and routed:
        share = next(iter(metrics.values()))["routed_correctly"]
        notes.append(
            f"Categories: {', '.join(categories)}. Each model kind is trained once per category (MVTec AD's "
            "protocol); an image goes to the model of the category whose training images it looks most like "
            f"(nearest thumbnail): {share:.1%} of the test images went to their own category's. Each category's "
            "scores are divided by its own threshold, so one threshold (about 1) decides for all; the "
            "per-category table shows how each fares (evaluate.slices can add the category slice, with intervals)."
        )
    elif len(categories) > 1:
        notes.append(
            f"Categories: {', '.join(categories)}. One model of each kind learns all of them together, with one "
            "threshold (the unified setting of UniAD, You et al. 2022; train.per_category is off); the "
            "per-category table shows how each fares (evaluate.slices can add the category slice, with intervals)."
        )
    if any(aligned.values()):
        which, rest = _on_and_off(aligned)
        notes.append(
            f"Pose alignment (train.align: {str(p.train.align).lower()}): the segmenter turns and centres {which} "
            "to its object's canonical pose (the moments of its foreground) before scoring, and turns the map back"
            + (f"; not {', '.join(rest)}: no object of a steady size whose outline names an axis." if rest else ".")
        )
    if any(flipped.values()):
        which, rest = _on_and_off(flipped)
        notes.append(
            f"Flip averaging (train.flip_average: {str(p.train.flip_average).lower()}): the segmenter's map of "
            f"{which} is the mean of the maps of the image and its three flips, each flipped back"
            + (f"; not {', '.join(rest)}: it did not raise the validation pixel AP there." if rest else ".")
        )
    if any(shifted.values()):
        which, rest = _on_and_off(shifted)
        notes.append(
            f"Shift averaging (train.shift_average: {str(p.train.shift_average).lower()}): the segmenter's map of "
            f"{which} is also averaged over the image shifted by half a logit cell (2 px) down, right and both, "
            "each shifted back (its logits are at 1/4 resolution)"
            + (f"; not {', '.join(rest)}: it did not raise the validation pixel AP there." if rest else ".")
        )
    if neighbour_patches:
        notes.append(
            "Nearest-neighbour distance (train.neighbour_distance): the segmenter's image score adds how far the "
            f"image's patches lie from the nearest of {neighbour_patches} patches kept from its training images "
            "(in its own features), standardised on the held-out good images in the segmenter's units; its "
            "anomaly map, and so the pixel AUROC, is the segmenter's alone."
        )
    if tiles:
        notes.append(
            f"Aspect-kept tiles (prepare.tiles): every image, resized with its aspect kept (short side "
            f"{info['image_size']} px), is also cut into square tiles along its long side ({tiles} tiles of "
            f"{sum(info['images'].values())} images); the segmenter's score adds a second nearest-neighbour "
            "distance, of an image's most distant tile to a bank of its training images' tiles, where a thin "
            "defect the square resize squeezed away keeps its width."
        )
    if SEGMENTER in metrics and tuple(p.train.anomaly_fills) != DEFAULT_FILLS:
        notes.append(
            f"Training anomalies (train.anomaly_fills): the segmenter's were filled with {', '.join(p.train.anomaly_fills)} "
            f"(the default: {', '.join(DEFAULT_FILLS)}; other_same_brightness is another good image at this one's "
            "mean brightness, told apart by its grain alone)."
        )
    if not info["pixel_metrics"]:
        notes.append(
            "No pixel masks in this source (no ground_truth folder): evaluation is image-level only, "
            "pixel_auroc is not computed."
        )
    if info["source"] == "magnetic-tile":
        notes.append(
            "Magnetic-Tile split: DifferNet's published one (its list of MT_Free training images; the other "
            "MT_Free images and every defect image are tested; the held-out share comes from the training "
            "list), as CS-Flow and MSFlow report."
            if p.data.split == "published"
            else f"Magnetic-Tile split: every defect image is tested, with a seeded {p.data.test_good_fraction:.0%} "
            "of MT_Free; the rest of MT_Free is trained on (minus the held-out share)."
        )
    if info["source"] == "synthetic":
        notes.append(
            "Synthetic data: the segmenter's pasted training anomalies (blobs, strokes, ellipses) resemble "
            "the generator's defects more than real defects resemble them; real accuracy is measured on "
            "Magnetic-Tile (benchmarks/defects.py)."
        )
    if "draem" in metrics:
        t = p.train
        notes.append(
            f"DRAEM here: {t.draem_size or info['image_size']} px, widths {t.draem_width} / "
            f"{max(t.draem_width // 2, 4)}, at most {t.epochs} epochs, focal weight {t.draem_focal_weight:g}, "
            f"Dice {t.draem_dice_weight:g}; the paper's: 256 px, 128 / 64, 700 epochs on a GPU, focal 1, no "
            "Dice (MVTec AD image / pixel AUROC 98.0 / 97.3). A CPU-sized DRAEM is far from converged."
        )
    best = max(metrics, key=lambda m: metrics[m]["image_auroc"])
    notes.append(f"Best image AUROC: {best} ({metrics[best]['image_auroc']:.4f}); candidate: {candidate}.")
    return near_chance_notes(metrics, candidate, categories if len(categories) > 1 else None) + notes


def near_chance_notes(metrics: dict, candidate: str, categories: list[str] | None = None) -> list[str]:
    """One warning per model whose test image AUROC is under NEAR_CHANCE, over all test images or on one of
    `categories`: whatever its thresholds say, it barely tells defective from good parts there (the report
    shows these next to the promotion decision)."""
    notes = []
    for name, m in metrics.items():
        where = [("", m["image_auroc"]), *((f" on category {c}", m[f"image_auroc_{c}"]) for c in categories or [])]
        for place, value in where:
            if value < NEAR_CHANCE:
                notes.append(
                    f"{WARNING}{name}{' (the candidate)' if name == candidate else ''} is near chance{place} on "
                    f"the test set: image AUROC {value:.3f} (under {NEAR_CHANCE}; 0.5 is a coin toss). It has not "
                    "learned what is normal for these parts; do not rely on its decisions."
                )
    return notes
