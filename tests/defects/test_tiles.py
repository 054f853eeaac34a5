"""Aspect-kept tiles (`prepare.tiles`, domains/defects/tiles.py) and the segmenter's second nearest-neighbour
distance on them: the geometry, the params' rule, and the stages on a Magnetic-Tile release whose crops vary in
aspect (prepare, train, evaluate, scoring new files, export naming why it has no graph)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from aiflow.cli import main
from domains.common.errors import DataError
from domains.common.images import to_size
from domains.defects.params import DefectsParams
from domains.defects.segmenter import load_segmenter
from domains.defects.tiles import Tiles, aspect_tiles, per_image_max, tile_layout
from domains.defects.train import model_image_scores, score_maps
from tests.conftest import digest, scored_batch, write_params
from tests.defects.conftest import small_defects_params, write_small_magnetic_tile

SIZE = 50


def test_tiles_keep_the_aspect_and_cover_the_long_side():
    assert tile_layout(100, 250, SIZE) == ((50, 125), [0, 38, 75])  # 2.5 sides: three tiles, overlapping
    assert tile_layout(250, 100, SIZE) == ((125, 50), [0, 38, 75])  # tall: along the height
    assert tile_layout(80, 160, SIZE) == ((50, 100), [0, 50])  # a whole number of sides: no overlap
    assert tile_layout(64, 64, SIZE) == ((50, 50), [0])  # square: one tile
    assert tile_layout(50, 52, SIZE) == ((50, 52), [0, 2])  # a little wider: two, nearly the same


def test_a_square_images_tile_is_its_square_and_a_wide_ones_tiles_are_cut_from_its_aspect_kept_resize():
    rng = np.random.default_rng(0)
    square = rng.integers(0, 256, (64, 64, 1), dtype=np.uint8)
    wide = rng.integers(0, 256, (40, 100, 3), dtype=np.uint8)
    tiles = aspect_tiles([square, wide], SIZE, channels=1)
    assert tiles.images.shape == (1 + 3, 1, SIZE, SIZE) and tiles.images.dtype == np.uint8
    assert tiles.owner.tolist() == [0, 1, 1, 1]
    np.testing.assert_array_equal(tiles.images[0], to_size(square, (SIZE, SIZE), 1))  # as prepare resizes
    kept = to_size(wide, (50, 125), 1)
    np.testing.assert_array_equal(tiles.images[1], kept[:, :, :SIZE])
    np.testing.assert_array_equal(tiles.images[3], kept[:, :, -SIZE:])
    empty = aspect_tiles([], SIZE, channels=3)
    assert empty.images.shape == (0, 3, SIZE, SIZE) and len(empty.owner) == 0


def test_the_tiles_of_some_images_are_renumbered_along_them_and_an_image_scores_as_its_highest_tile():
    tiles = Tiles(np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1), np.array([0, 1, 1, 2, 3, 3]))
    some = tiles.of(np.array([3, 1]))
    assert some.owner.tolist() == [0, 0, 1, 1] and some.images.ravel().tolist() == [4, 5, 1, 2]
    assert per_image_max(np.array([0.1, 0.5, 0.2, 0.3]), some.owner, 2).tolist() == [0.5, 0.3]


def test_tiles_are_only_prepared_for_the_distance_that_reads_them():
    section = small_defects_params()
    section["prepare"].update(tiles=True)
    with pytest.raises(ValidationError, match="prepare.tiles: only the segmenter's nearest-neighbour distance"):
        DefectsParams.model_validate(section)
    section["train"].update(neighbour_distance=True)
    assert DefectsParams.model_validate(section).prepare.tiles


@pytest.fixture(scope="module")
def tiled(tmp_path_factory) -> tuple[Path, Path, dict]:
    """Every stage to evaluate on a small Magnetic-Tile release (crops 30-70 px wide, 40-60 tall) with tiles on."""
    root = tmp_path_factory.mktemp("tiled")
    (root / "registry").mkdir()
    source = write_small_magnetic_tile(root / "mt", free=30, per_type=3)
    section = small_defects_params()
    section["data"] = {"source": "magnetic-tile", "path": str(source)}
    section["prepare"].update(tiles=True, image_size=32)
    section["train"].update(models=["segmenter"], neighbour_distance=True)
    section["evaluate"].update(candidate="segmenter")
    write_params(root, "defects", section)
    patch = pytest.MonkeyPatch()
    patch.setenv("AIFLOW_ROOT", str(root))
    before = digest(source)
    for stage in ("acquire", "validate", "prepare", "train", "evaluate"):
        assert main(["stage", stage, "defects"]) == 0
    patch.undo()
    assert digest(source) == before  # the release is only read
    return root, source, section


def test_prepare_writes_each_images_tiles_and_training_keeps_a_bank_of_them(tiled):
    root, _, _ = tiled
    data = root / "data" / "defects"
    items = pd.read_parquet(data / "prepare/items.parquet")
    owner = np.load(data / "prepare/tile_owner.npy")
    tiles = np.load(data / "prepare/tiles.npy")
    assert tiles.shape[1:] == (1, 32, 32) and len(tiles) == len(owner)
    expected = [len(tile_layout(h, w, 32)[1]) for h, w in zip(items["height"], items["width"])]
    assert np.bincount(owner, minlength=len(items)).tolist() == expected  # every image, as many as its aspect needs
    assert len(owner) > len(items)  # the fixture's crops are not all square
    assert json.loads((data / "prepare/info.json").read_text())["tiles"] == len(owner)
    model = load_segmenter(data / "train/segmenter.pt")
    assert model.neighbours is not None and model.tile_neighbours is not None
    assert model.tile_neighbours.features.shape[1] == model.neighbours.features.shape[1]
    notes = json.loads((data / "evaluate/notes.json").read_text())
    assert any(note.startswith("Aspect-kept tiles (prepare.tiles)") and f"{len(owner)} tiles" in note for note in notes)


def test_scoring_new_files_reads_their_tiles_and_gives_evaluates_scores(tiled, tmp_path):
    root, source, _ = tiled
    data = root / "data" / "defects"
    items = pd.read_parquet(data / "prepare/items.parquet").query("split == 'test'")
    batch = tmp_path / "batch"
    for item in items["item_id"]:  # MT_<type>/Imgs/<stem>.jpg as <type>/ folders, a layout scoring reads
        folder = batch / ("good" if item.startswith("MT_Free") else item.split("/")[0][3:].lower())
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / item, folder / Path(item).name)
    scored = scored_batch(root, "defects", batch, "mvtec", "segmenter").predictions
    units = pd.read_parquet(data / "evaluate/predictions.parquet")
    evaluated = dict(zip(units["unit"].map(lambda i: Path(i).name), units["segmenter:p1"]))
    by_name = dict(zip(scored["item_id"].map(lambda i: Path(i).name), scored["anomaly_score"]))
    assert by_name.keys() == evaluated.keys()
    np.testing.assert_allclose([by_name[k] for k in evaluated], list(evaluated.values()), rtol=1e-5, atol=1e-6)


def test_the_tile_distance_changes_the_score_needs_the_tiles_and_has_no_graph(tiled):
    from domains.common.registry import load_spec

    root, _, section = tiled
    data = root / "data" / "defects"
    model = load_segmenter(data / "train/segmenter.pt")
    items = pd.read_parquet(data / "prepare/items.parquet")
    test = np.flatnonzero(items["split"] == "test")
    images = np.load(data / "prepare/images.npy")[test]
    tiles = Tiles(np.load(data / "prepare/tiles.npy"), np.load(data / "prepare/tile_owner.npy")).of(test)
    maps = score_maps("segmenter", model, images)
    with pytest.raises(DataError, match="aspect-kept tiles"):
        model_image_scores(model, images, maps, 0.04)
    with_tiles = model_image_scores(model, images, maps, 0.04, tiles)
    model.tile_neighbours = None
    assert np.abs(with_tiles - model_image_scores(model, images, maps, 0.04)).max() > 1e-3
    spec = load_spec("defects")
    exportable = spec.export(spec.params_model.model_validate(section), data / "train", data / "prepare")
    assert exportable.models == [] and "aspect-kept tiles" in exportable.not_converted["segmenter"]
