"""`aiflow score defects`: a trained, promoted champion scores new images end to end.

One throwaway repository (tiny params) serves every test: `dvc repro report@defects` on the synthetic
part category (an object at a random pose) with DRAEM as the candidate, promotion, then folders of new
parts written here by the synthetic generator (MVTec layout, <type>/ folders, flat).
Bad inputs run in-process and must stop with one `error:` line, no output, the input untouched.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from domains.defects.params import SyntheticParams
from domains.defects.synthetic import write_mvtec
from tests.conftest import digest, drift_psi, promoted_copy, read_scores, run, score_in_process, set_domain_params
from tests.defects.conftest import small_defects_params, with_draem, write_small_mvtec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    params = with_draem(small_defects_params(), "part")
    # DRAEM is the champion scoring uses; at this tiny size it is not expected to beat the patch Gaussian.
    root = promoted_copy(tmp_path_factory, "defects", params, evaluate={"candidate": "draem", "baselines": []})
    # Scoring applies the gate policy in params now (not the one training ran with): one blank image in a
    # small batch is set aside rather than blocking it.
    params["evaluate"].update(candidate="draem", baselines=[])
    params["gate"]["max_quarantine_fraction"] = 0.2
    set_domain_params(root, "defects", params)
    return root


@pytest.fixture(scope="module")
def category(tmp_path_factory) -> Path:
    """New parts in MVTec's layout (another seed than training): test/good, test/crack, test/missing."""
    return write_small_mvtec(tmp_path_factory.mktemp("batch") / "tiles", seed=9, category="part")


in_process = functools.partial(score_in_process, "defects")
read = read_scores


def test_mvtec_category_scores_each_image_at_the_threshold_with_maps_and_image_auroc(repo, category, tmp_path):
    out = tmp_path / "scores"
    proc = run(["aiflow", "score", "defects", str(category), "--out", str(out)], repo)
    assert "scored 8 of 8" in proc.stdout
    predictions, manifest = read(out)
    threshold = json.loads((repo / "data/defects/train/thresholds.json").read_text())["draem"]
    assert list(predictions.columns[:4]) == ["item_id", "anomaly_score", "decision", "label"]
    assert predictions["item_id"].tolist()[:2] == ["crack/000.png", "crack/001.png"]
    assert (predictions["decision"] == (predictions["anomaly_score"] >= threshold).astype(int)).all()
    assert set(predictions["label"]) == {"good", "crack", "missing"}
    assert predictions["model_version"].eq("v1").all() and predictions["model_md5"].str.endswith(".dir").all()
    assert predictions["input_sha256"].eq(manifest["input_sha256"]).all()
    assert {"image_auroc", "f1", "precision", "recall"} <= set(manifest["shadow_metrics"])
    maps = sorted(p.name for p in (out / "maps").glob("*.png"))
    assert maps == sorted(i.replace("/", "__") for i in predictions["item_id"])
    with Image.open(out / "maps" / maps[0]) as image:
        assert image.size == (48, 48) and image.mode == "RGB"
    assert manifest["counts"]["decisions"] and "data:image/png;base64" in (out / "report.html").read_text()


def test_flat_folder_quarantines_a_blank_image_and_rescoring_gives_identical_bytes(
    repo, category, tmp_path, monkeypatch, capsys
):
    flat = tmp_path / "flat"
    flat.mkdir()
    for file in sorted((category / "test").rglob("*.png")):
        shutil.copy(file, flat / f"{file.parent.name}_{file.name}")
    Image.fromarray(np.full((48, 48), 128, dtype=np.uint8)).save(flat / "zz_blank.png")
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        code, err = in_process(repo, monkeypatch, capsys, str(flat), "--out", str(out))
        assert code == 0, err
    predictions, manifest = read(outs[0])
    assert len(predictions) == 9 and "label" not in predictions and manifest["shadow_metrics"] is None
    blank = predictions.set_index("item_id").loc["zz_blank.png"]
    assert "pixel_std:not_constant" in blank["quarantine_reason"] and pd.isna(blank["anomaly_score"])
    assert manifest["counts"]["quarantined"] == 1 and predictions["anomaly_score"].notna().sum() == 8
    assert (outs[0] / "predictions.parquet").read_bytes() == (outs[1] / "predictions.parquet").read_bytes()
    assert len(list((outs[0] / "maps").glob("*.png"))) == 8


def _good_parts(root: Path, category: str, invert: bool = False) -> Path:
    """A flat folder of 120 new good images of the trained product (`category` 'part': the training seed and
    size, so the same grain and tint; 'surface': another kind of image), optionally inverted."""
    params = with_draem(small_defects_params(), category)
    synthetic = SyntheticParams(**{**params["synthetic"], "n_test_good": 120, "n_test_per_type": 1})
    test = write_mvtec(synthetic, params["seed"], root / "mvtec") / "test" / "good"
    folder = root / "flat"
    folder.mkdir()
    for file in sorted(test.glob("*.png")):
        with Image.open(file) as image:
            pixels = np.asarray(image)
        Image.fromarray(255 - pixels if invert else pixels).save(folder / file.name)
    return folder


def test_the_champions_embeddings_tell_another_kind_of_image_from_new_good_parts(repo, tmp_path):
    """DRAEM's bottleneck features (the champion's) of the batch against those of its ~30 training images."""
    batches = {
        "new parts": _good_parts(tmp_path / "new", "part"),
        "surfaces": _good_parts(tmp_path / "surfaces", "surface"),
        "inverted parts": _good_parts(tmp_path / "inverted", "part", invert=True),
    }
    psi = {name: drift_psi(repo, "defects", batch, "mvtec", "draem") for name, batch in batches.items()}
    new = psi["new parts"]["embedding_distance"]  # 0.43 here: deciles of 30 training images are coarse
    for shifted in ("surfaces", "inverted parts"):
        assert psi[shifted]["embedding_distance"] > max(2.0, 10 * new), psi  # 7.8: beyond every training image


def _bad_inputs(base: Path, category: Path) -> dict[str, tuple[Path, list[str], str]]:
    """name -> (input, extra arguments, a part of the one-line error)."""
    broken = base / "broken"
    shutil.copytree(category / "test" / "good", broken)
    (broken / "cut.png").write_bytes((broken / "000.png").read_bytes()[:50])
    (base / "empty").mkdir()
    np.savez(base / "medical.npz", test_images=np.zeros((3, 48, 48), dtype=np.uint8))
    return {
        "larger images": (write_small_mvtec(base / "big", seed=3, size=64) / "test", [], "height 64"),
        "RGB images": (write_small_mvtec(base / "rgb", seed=3, channels=3) / "test", [], "channels 3"),
        "undecodable image": (broken, [], "decode_error:decodes"),
        "empty folder": (base / "empty", [], "no images"),
        "another domain's file": (base / "medical.npz", [], "not a folder"),
        "unknown source": (category, ["--source", "magnetic-tile"], "unknown source"),
    }


def test_bad_inputs_stop_in_one_line_and_write_nothing(repo, category, tmp_path, monkeypatch, capsys):
    for name, (data, extra, expected) in _bad_inputs(tmp_path, category).items():
        before, out = digest(data), tmp_path / f"out-{name.replace(' ', '_')}"
        code, err = in_process(repo, monkeypatch, capsys, str(data), *extra, "--out", str(out))
        lines = err.strip().splitlines()
        assert code == 1 and expected in err, (name, err)
        assert lines[0].startswith("error:") and all(line.startswith("  ") for line in lines[1:]), (name, err)
        assert "Traceback" not in err and not out.exists() and digest(data) == before, name


def test_a_folder_in_chunks_gives_the_whole_batchs_bytes(repo, category, tmp_path, monkeypatch, capsys):
    """8 test images 3 at a time against all at once: the same predictions and maps byte for byte, the same counts,
    notes and shadow metrics (over the whole batch)."""
    manifests = {}
    for rows in (0, 3):
        out = tmp_path / str(rows)
        code, err = in_process(repo, monkeypatch, capsys, str(category), "--chunk-rows", str(rows), "--out", str(out))
        assert code == 0, err
        manifests[rows] = read(out)[1]
    assert (tmp_path / "0" / "predictions.parquet").read_bytes() == (
        tmp_path / "3" / "predictions.parquet"
    ).read_bytes()
    assert digest(tmp_path / "0" / "maps") == digest(tmp_path / "3" / "maps")
    whole, chunked = manifests[0], manifests[3]
    assert whole["counts"]["chunks"] == 1 and chunked["counts"]["chunks"] == 3
    assert whole["notes"] == chunked["notes"] and whole["shadow_metrics"] == chunked["shadow_metrics"]
    assert whole["shadow_metrics"]["labelled"] == 8
