"""Score new images with a trained defect model: anomaly score, decision and an anomaly-map PNG per image.

Inputs (`mvtec`, the synthetic source's layout): an MVTec category folder (its test/<type>/ images),
a folder of <type>/ folders ('good' is normal; the names label the images, for a shadow
evaluation), or a flat folder of images (no labels). Images pass the training gate's per-image
checks, must have a size and channel count the training images had (where training saw few
sizes; Magnetic-Tile's crops vary by design and are not checked), and are resized to the model's
size as `prepare` did (and cut into aspect-kept tiles, read again from their files, for a segmenter trained
with prepare.tiles). The decision is the model's own threshold, saved by training (a quantile
of held-out good images' scores). With a model per category (routed.py), each image goes to its
category's model by its look, so a batch may mix the trained categories.

Score drift is not judged here: an anomaly detector's scores move with the share of defective
parts in a batch, which is what it is there to find; a batch full of defects must be scored, not
blocked. Input drift (size, channels, intensity) is judged as for every image domain, and so is the
`embedding_distance` of each image: how far one trained model's features (the first of EMBEDDERS that
training fitted, so the choice depends on training alone and DVC's train stage knows all it reads; pooled
by their median over positions, so that a local defect barely moves them: domains/common/vision.py
`pooled`) lie from the training split's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from domains.common.contract import Reference, Scored, ScoreOptions
from domains.common.errors import DataError
from domains.common.image_scoring import (
    ShadowCarry,
    batch_pixels,
    check_as_trained,
    drift_frame,
    embedding_distances,
    embedding_model,
    model_channels,
    model_inputs,
    read_folder_chunks,
    save_embeddings,
    write_maps,
)
from domains.common.items import ID, LABEL, SPLIT
from domains.defects.checks import MODE
from domains.defects.loaders import GOOD
from domains.defects.metrics import image_metrics
from domains.defects.params import DefectsParams
from domains.defects.pipeline import IMAGES, ITEMS
from domains.defects.tiles import aspect_tiles
from domains.defects.train import (
    BASELINE,
    DRAEM,
    PATCHCORE,
    SEGMENTER,
    THRESHOLDS,
    embeddings,
    load_model,
    maps_and_embeddings,
    model_image_scores,
    needs_tiles,
    score_maps,
)

# Which trained model embeds images for drift: the first of these that training fitted (the learned
# encoders first; the patch Gaussian, always fitted, last). Not evaluate.candidate: the train stage would
# then read an evaluate param, and changing the candidate would leave a stale bank.
EMBEDDERS = (DRAEM, SEGMENTER, PATCHCORE, BASELINE)

LAYOUTS = "an MVTec category folder (test/<type>/), <type>/ folders ('good' is normal), or a flat folder of images"


def read_batch(p: DefectsParams, path: Path, source: str) -> pd.DataFrame:
    """The per-image facts of the batch, with each image's mode (the gate's `mode:consistent`)."""
    return next(read_chunks(p, path, source, 0))


def read_chunks(p: DefectsParams, path: Path, source: str, rows: int) -> Iterator[pd.DataFrame]:
    """read_batch in pieces of at most `rows` images (0: whole): a folder larger than memory is decoded a piece
    at a time."""
    if path.is_file():
        raise DataError(f"{path}: a file, not a folder of images ({LAYOUTS})")
    folder = path / "test" if (path / "test").is_dir() and (path / "train").is_dir() else path
    for table in read_folder_chunks(folder, LAYOUTS, p.prepare.image_size, rows):
        yield table.assign(**{MODE: table["channels"].astype(str) + "x" + table["dtype"]})


def reference(p: DefectsParams, prepared_dir: Path, train_dir: Path) -> Reference:
    """The training split's native sizes, the intensity of its prepared images and one trained model's
    embeddings of them (saved with the model); no score reference (see above)."""
    items = pd.read_parquet(prepared_dir / ITEMS)
    train = np.flatnonzero(items[SPLIT].to_numpy() == "train")
    images = np.ascontiguousarray(np.load(prepared_dir / IMAGES, mmap_mode="r")[train])
    trained = json.loads((train_dir / THRESHOLDS).read_text())
    name = next(m for m in EMBEDDERS if m in trained)
    distance = save_embeddings(train_dir, name, embeddings(name, load_model(train_dir, name), images), p.seed)
    height, width = items["height"].to_numpy()[train], items["width"].to_numpy()[train]
    return Reference(drift_frame(height, width, images, distance), {})


def score_batch(p: DefectsParams, model_dir: Path, model: str, table: pd.DataFrame, options: ScoreOptions) -> Scored:
    thresholds = json.loads((model_dir / THRESHOLDS).read_text())
    if model not in thresholds:
        raise DataError(f"defects: unknown model '{model}'; trained: {', '.join(thresholds)}")
    check_as_trained(model_dir, table, "defects")
    images = model_inputs(table, p.prepare.image_size, model_channels(model_dir))
    embedder = embedding_model(model_dir)
    embedded: np.ndarray | None = None
    if options.predict is not None:  # another runtime of the model (the endpoint's ONNX): its maps and scores
        maps, scores = options.predict(model, images)
        if options.drift:
            embedded = embeddings(embedder, load_model(model_dir, embedder), images)
    else:
        scorer = load_model(model_dir, model)  # loaded after the model's hash check
        if embedder == model:  # one pass gives both
            maps, embedded = maps_and_embeddings(model, scorer, images)
        else:
            maps = score_maps(model, scorer, images)
            if options.drift:  # the endpoint judges no drift: no second model's pass
                embedded = embeddings(embedder, load_model(model_dir, embedder), images)
        tiles = (
            aspect_tiles(batch_pixels(table), p.prepare.image_size, images.shape[1]) if needs_tiles(scorer) else None
        )
        scores = model_image_scores(scorer, images, maps, p.train.score_pool, tiles)
    threshold = float(thresholds[model])
    decision = (scores >= threshold).astype(np.int64)
    predictions = pd.DataFrame(
        {ID: table[ID].to_numpy(), "anomaly_score": scores, "decision": decision}, index=table.index
    )
    labelled = LABEL in table and table[LABEL].notna().all()
    if labelled:
        predictions["label"] = table[LABEL].astype(str).to_numpy()
    if options.maps_dir is not None:
        heat = np.clip((maps - threshold) / max(abs(threshold), 1e-6), 0, 1)  # colour from the threshold to twice it
        write_maps(options.maps_dir, table[ID].tolist(), images, heat)
    notes = [
        f"decision 1 (defective): anomaly_score >= {threshold:.6g}, {model}'s threshold "
        f"(quantile {p.train.threshold_quantile} of held-out good images' scores)",
        f"anomaly maps: one PNG per image in maps/ ({p.prepare.image_size} px; red from the threshold to twice it)",
        "score drift: not judged for an anomaly detector (its scores follow the share of defects)",
    ]
    defective = (table[LABEL] != GOOD).to_numpy() if labelled else np.zeros(0, bool)
    carry = ShadowCarry.after(options.carry, labelled, defective, scores)
    shadow = None
    if carry.labelled:
        metrics = image_metrics(carry.labels.astype(bool), carry.scores, threshold)
        shadow = {k: v for k, v in metrics.items() if not np.isnan(v)} | {
            "defective_share": float(carry.labels.mean()),
            "labelled": len(carry.labels),
        }
    distance = (
        embedding_distances(model_dir, embedded)
        if options.drift and embedded is not None
        else np.full(len(images), np.nan)  # no drift judged (the endpoint): no distances
    )
    drift = drift_frame(table["height"].to_numpy(), table["width"].to_numpy(), images, distance)
    return Scored(predictions, drift, scores, shadow, notes, carry if options.chunked else None)
