"""One model per category behind one interface: the route by thumbnail, the scaled maps, the saved files and
the export's graph (domains/defects/routed.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from domains.common.export import from_torch
from domains.defects.export import _SegmenterMap
from domains.defects.routed import (
    Routed,
    RoutedMap,
    load_routed,
    routed_file,
    save_router,
    save_scales,
    thumbnails,
)
from domains.defects.segmenter import Segmenter, load_segmenter, save_segmenter, segmenter_outputs
from domains.defects.synthetic import part, surface
from domains.defects.train import SEGMENTER, embeddings

SIZE = 40  # not a multiple of the thumbnail's side: the route drops the last rows and columns


def _images(category: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    make = (lambda: surface(rng, SIZE, 0.4)) if category == "surface" else (lambda: part(rng, SIZE, 0.4, 0.06)[0])
    return np.stack([np.round(make() * 255).astype(np.uint8)[None] for _ in range(n)])


@pytest.fixture(scope="module")
def routed() -> Routed:
    train = {c: _images(c, 12, seed) for seed, c in enumerate(("surface", "part"))}
    models = {}
    for seed, c in enumerate(train):
        torch.manual_seed(seed)
        models[c] = Segmenter(1, 4).eval()
    bank = thumbnails(torch.from_numpy(np.concatenate(list(train.values())))).numpy()
    return Routed(["surface", "part"], models, {"surface": 0.25, "part": 4.0}, bank, np.repeat([0, 1], 12))


def _one(model: Segmenter, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return segmenter_outputs(model, torch.from_numpy(images))


def test_embeddings_alone_are_each_images_own_categorys(routed):
    surfaces, parts = _images("surface", 3, 10), _images("part", 2, 11)
    embedded = embeddings(SEGMENTER, routed, np.concatenate([surfaces, parts]))
    np.testing.assert_allclose(embedded[:3], _one(routed.models["surface"], surfaces)[1], atol=1e-5)
    np.testing.assert_allclose(embedded[3:], _one(routed.models["part"], parts)[1], atol=1e-5)


def test_each_image_is_scored_by_its_own_categorys_model_and_scaled(routed):
    surfaces, parts = _images("surface", 5, 10), _images("part", 5, 11)
    mixed = np.concatenate([parts[:2], surfaces, parts[2:]])
    assert routed.route(mixed).tolist() == [1, 1, 0, 0, 0, 0, 0, 1, 1, 1]
    maps, embedded = routed.outputs(mixed, _one)
    own_surface, surface_embedded = _one(routed.models["surface"], surfaces)
    own_part, _ = _one(routed.models["part"], parts)
    np.testing.assert_array_equal(maps[2:7], own_surface / 0.25)
    np.testing.assert_array_equal(maps[[0, 1, 7, 8, 9]], own_part / 4.0)
    np.testing.assert_array_equal(embedded[2:7], surface_embedded)
    empty_maps, empty_embedded = routed.outputs(mixed[:0], _one)
    assert empty_maps.shape == (0, SIZE, SIZE) and len(empty_embedded) == 0


def test_the_saved_files_load_as_the_same_routed_model(routed, tmp_path):
    save_router(tmp_path, routed.categories, routed.bank, routed.bank_category)
    for c, model in routed.models.items():
        save_segmenter(model, routed_file(tmp_path / "segmenter.pt", c))
    save_scales(tmp_path, "segmenter", routed.scales)
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "routing.json",
        "routing_thumbnails.npz",
        "segmenter.part.pt",
        "segmenter.surface.pt",
    ]
    loaded = load_routed(tmp_path, tmp_path / "segmenter.pt", load_segmenter, "segmenter")
    images = np.concatenate([_images("surface", 3, 20), _images("part", 3, 21)])
    assert loaded.scales == routed.scales
    np.testing.assert_array_equal(loaded.outputs(images, _one)[0], routed.outputs(images, _one)[0])


def test_the_export_graph_routes_and_scales_as_python_does(routed):
    images = np.concatenate([_images("part", 4, 30), _images("surface", 4, 31)])
    expected = routed.outputs(images, _one)[0]
    graph = RoutedMap(routed, _SegmenterMap).eval()
    with torch.no_grad():
        np.testing.assert_allclose(graph(torch.from_numpy(images)).numpy(), expected, atol=1e-6)
    onnx = from_torch(graph, (torch.from_numpy(images[:2]),), ["x"], ["map"], {"x": {0: "items"}})
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": images})
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_each_categorys_fit_keeps_its_own_checkpoint(tmp_path):
    """An interrupted run resumes a category's fit from that category's checkpoint only (trainer.fit resumes on a
    matching fingerprint in its checkpoint file)."""
    from domains.common.contract import TrainEnv
    from domains.defects.train import _category_env

    env = TrainEnv(tmp_path / "checkpoints", "abc")
    surface, part = _category_env(env, "surface"), _category_env(env, "part")
    assert surface.checkpoint_dir != part.checkpoint_dir and surface.checkpoint_dir.is_dir()
    assert len({env.fingerprint, surface.fingerprint, part.fingerprint}) == 3
    assert _category_env(env, "") == env  # one model for every image: as before
