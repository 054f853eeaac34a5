"""The segmenter's nearest-neighbour distance (`train.neighbour_distance`, domains/defects/neighbours.py):
the distance itself, the bank's scale, saving, and the stages with it on (train, evaluate, score, export)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aiflow.cli import main
from domains.common.contract import TrainEnv
from domains.defects.memory_bank import distance_maps, greedy_coreset
from domains.defects.metrics import image_scores
from domains.defects.neighbours import fit_bank, patch_features, with_neighbours
from domains.defects.segmenter import Segmenter, anomaly_maps, load_segmenter, save_segmenter, train_segmenter
from domains.defects.train import model_image_scores
from tests.conftest import write_params
from tests.defects.conftest import small_defects_params
from tests.defects.test_models import _tiny_train_params, surfaces

POOL = 0.04


def test_the_distance_is_to_the_nearest_bank_patch():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    features = torch.tensor([[[[0.0, 3.0]], [[0.0, 4.0]]]])  # one image, 1 x 2 patches: (0, 0) and (3, 4)
    features = torch.cat([features, features + torch.tensor([6.0, 8.0]).view(1, 2, 1, 1)])  # and (6, 8), (9, 12)
    maps = distance_maps(bank, features, (1, 2))
    np.testing.assert_allclose(maps, [[[0.0, 0.0]], [[5.0, 10.0]]], atol=1e-5)  # both 5 and 10 from (3, 4)
    assert distance_maps(bank, features[:0], (4, 4)).shape == (0, 4, 4)


def test_the_coreset_keeps_the_rare_patches_and_is_seeded():
    common = torch.randn(200, 3, generator=torch.Generator().manual_seed(0)) * 0.01
    rare = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    patches = torch.cat([common[:100], rare[:1], common[100:], rare[1:]])
    kept = greedy_coreset(patches, 4, seed=3)
    assert kept.shape == (4, 3) and all((kept == r).all(1).any() for r in rare)  # a random 4 of 203 would miss them
    assert torch.equal(kept, greedy_coreset(patches, 4, seed=3))
    assert torch.equal(greedy_coreset(patches, 500, seed=3), patches)
    wide = torch.cat([patches, torch.zeros(len(patches), 300)], 1)  # compared in a random projection
    assert all((greedy_coreset(wide, 4, seed=3)[:, :3] == r).all(1).any() for r in rare)


@pytest.fixture(scope="module")
def banked(tmp_path_factory) -> tuple[Segmenter, np.ndarray, np.ndarray]:
    """A tiny segmenter trained on surfaces, with a bank of its training patches (flip averaging on)."""
    train, val = surfaces(10, seed=1), surfaces(6, seed=2)
    params = _tiny_train_params(flip_average=True)
    model, _ = train_segmenter(train, val, params, 0, TrainEnv(tmp_path_factory.mktemp("ckpt"), "n"))
    model.neighbours = fit_bank(model, train, val, POOL, 10_000, 0)  # more than its 160 patches: all kept
    return model, train, val


def test_the_bank_holds_every_training_patch_and_scales_to_the_segmenter(banked):
    model, train, val = banked
    bank = model.neighbours
    assert bank is not None and bank.features.shape == (len(train) * 4 * 4, 4 * model.width)  # 32 px: 4 x 4 at 1/8
    np.testing.assert_allclose(distance_maps(bank.features, patch_features(model, train), (32, 32)), 0, atol=1e-3)
    own = image_scores(anomaly_maps(model, torch.from_numpy(val)), POOL)
    added = with_neighbours(model, val, own, POOL) - own  # on the held-out good images the bank was scaled on
    assert abs(added.mean()) < 1e-5 and added.std() == pytest.approx(own.std(), rel=1e-4)


def test_a_patch_never_seen_in_training_raises_the_score(banked):
    model, _, val = banked
    spotted = val.copy()
    spotted[:, :, 8:24, 8:24] = np.indices((16, 16)).sum(0) % 2 * 255  # a checkerboard: nothing like the surfaces
    zero = np.zeros(len(val))
    good, bad = (with_neighbours(model, x, zero, POOL) for x in (val, spotted))
    assert bad.min() > good.max()


def test_the_bank_is_saved_with_the_model_and_only_a_segmenter_with_one_adds_it(banked, tmp_path):
    model, _, val = banked
    save_segmenter(model, tmp_path / "segmenter.pt")
    loaded = load_segmenter(tmp_path / "segmenter.pt")
    maps = anomaly_maps(loaded, torch.from_numpy(val))
    np.testing.assert_array_equal(
        model_image_scores(loaded, val, maps, POOL), model_image_scores(model, val, maps, POOL)
    )
    loaded.neighbours = None
    np.testing.assert_array_equal(model_image_scores(loaded, val, maps, POOL), image_scores(maps, POOL))
    assert np.array_equal(model_image_scores(object(), val, maps, POOL), image_scores(maps, POOL))


def _stages(root: Path, section: dict, stages: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> int:
    (root / "registry").mkdir(parents=True, exist_ok=True)
    write_params(root, "defects", section)
    monkeypatch.setenv("AIFLOW_ROOT", str(root))
    for stage in stages:
        if code := main(["stage", stage, "defects"]):
            return code
    return 0


def test_the_stages_score_with_the_distance_and_the_export_computes_it_in_the_graph(tmp_path, monkeypatch):
    from domains.common.export import TOLERANCES, convert_all
    from domains.common.registry import load_spec

    section = small_defects_params()
    section["synthetic"].update(category="surface")
    fills = ["turned", "darker_brighter", "other_darker_brighter", "level", "other_same_brightness"]
    section["train"].update(models=["segmenter"], neighbour_distance=True, anomaly_fills=fills)  # magnetic-tile-long's
    assert _stages(tmp_path, section, ("acquire", "validate", "prepare", "train", "evaluate"), monkeypatch) == 0
    data = tmp_path / "data" / "defects"
    model = load_segmenter(data / "train" / "segmenter.pt")
    assert model.neighbours is not None
    predictions = json.loads((data / "evaluate" / "metrics.json").read_text())["segmenter"]
    assert 0 <= predictions["image_auroc"] <= 1
    notes = (data / "evaluate" / "notes.json").read_text()
    assert f"nearest of {len(model.neighbours.features)} patches kept" in notes  # the report says so
    assert "filled with turned, darker_brighter, other_darker_brighter, level, other_same_brightness" in notes

    spec = load_spec("defects")
    exportable = spec.export(spec.params_model.model_validate(section), data / "train", data / "prepare")
    (segmenter,) = exportable.models
    with_distance = segmenter.reference
    model.neighbours = None
    images = segmenter.test["x"]
    plain = model_image_scores(model, images, anomaly_maps(model, torch.from_numpy(images)), POOL)
    assert np.abs(with_distance - plain).max() > 1e-3  # the reference scores carry the distance
    (tmp_path / "onnx").mkdir()
    models = convert_all(exportable, tmp_path / "onnx", TOLERANCES, True, "defects")  # raises outside parity
    parity = models["segmenter"]["parity"]
    assert parity["passed"] and parity["map"]["passed"] and parity["decisions_differ"] == 0


def test_the_distance_with_a_model_per_category_stops_before_training(tmp_path, monkeypatch, capsys):
    section = small_defects_params()
    section["synthetic"].update(category="both")
    section["train"].update(neighbour_distance=True, per_category=True)
    assert _stages(tmp_path, section, ("acquire", "validate", "prepare"), monkeypatch) == 0
    capsys.readouterr()
    assert main(["stage", "train", "defects"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "train.neighbour_distance" in err and "per_category: false" in err
    assert not (tmp_path / "data" / "defects" / "train" / "segmenter.pt").exists()
