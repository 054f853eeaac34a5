"""`aiflow export`: ONNX files proven equal to the evaluated model, int8 within its bounds, nothing written
when parity fails or there is no champion. One small fraud run serves every test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import run, small_fraud_params, trained_copy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fraud_export(tmp_path_factory) -> dict:
    repo = trained_copy(tmp_path_factory, "fraud", small_fraud_params())
    before_promotion = run(["aiflow", "export", "fraud"], repo, check=False)
    written_before_promotion = (repo / "data" / "fraud" / "exports").exists()
    run(["aiflow", "champion", "promote", "fraud"], repo)
    proc = run(["aiflow", "export", "fraud", "--int8"], repo)
    out = repo / "data" / "fraud" / "exports" / "v1"
    return {
        "repo": repo,
        "out": out,
        "stdout": proc.stdout,
        "manifest": json.loads((out / "manifest.json").read_text()),
        "no_champion": before_promotion,
        "written_before_promotion": written_before_promotion,
    }


def test_every_fraud_model_is_exported_within_its_parity_bound(fraud_export):
    manifest, out = fraud_export["manifest"], fraud_export["out"]
    assert set(manifest["models"]) == {"logreg", "hgb", "mlp"} and manifest["not_converted"] == {}
    bounds = {"logreg": 1e-5, "hgb": 1e-4, "mlp": 1e-5}
    for name, figures in manifest["models"].items():
        parity = figures["parity"]
        assert parity["passed"] and parity["max_abs_diff"] <= bounds[name] == parity["tolerance"], (name, parity)
        assert parity["items"] == manifest["test_items"] > 0 and parity["decisions_differ"] == 0
        assert (out / figures["file"]).is_file()
    assert manifest["model"]["version"] == "v1" and manifest["model"]["dvc_md5"].endswith(".dir")
    assert (
        manifest["model"]["metrics"] and manifest["threshold"] == 0.5 and manifest["class_names"] == ["legit", "fraud"]
    )
    assert "mlp: max |p_onnx - p_ref|" in fraud_export["stdout"]


def test_the_written_files_reproduce_the_trained_models(fraud_export):
    """Independently of the manifest: the files on disk against the trained models on the test split."""
    from domains.fraud.train import load_split, score_all

    repo, out = fraud_export["repo"], fraud_export["out"]
    frame, names = load_split(repo / "data" / "fraud" / "prepare")
    preprocessing = json.loads((out / "preprocessing.json").read_text())
    assert preprocessing["features"] == names and preprocessing["input"]["shape"] == ["items", len(names)]
    x = frame.loc[frame["split"] == "test", names].to_numpy(np.float32)
    reference = score_all(repo / "data" / "fraud" / "train", x)
    for name, figures in fraud_export["manifest"]["models"].items():
        session = ort.InferenceSession(str(out / figures["file"]), providers=["CPUExecutionProvider"])
        (p,) = session.run([figures["output"]], {"x": x})
        p = p if figures["column"] is None else p[:, figures["column"]]
        assert np.abs(p - reference[name]).max() <= figures["parity"]["tolerance"], name


def test_int8_mlp_within_one_point_and_measured(fraud_export):
    models = fraud_export["manifest"]["models"]
    q = models["mlp"]["int8"]
    assert q["exported"] and abs(q["change_points"]) <= 1.0 and (fraud_export["out"] / q["file"]).is_file()
    assert 0 < q["size_ratio"] < 1 and q["size_bytes"]["int8"] < q["size_bytes"]["float32"]
    # the weights shrink about 4x; the graph around them does not, so the file shrinks less
    assert q["weight_ratio"] < 0.4 and q["weight_ratio"] < q["size_ratio"]
    assert all(v > 0 for batch in q["latency_ms"].values() for v in batch.values())
    assert set(q["latency_ms"]) == {"batch_1", "batch_64"}
    # Trees and the linear model have no int8 version, and say so.
    assert not models["hgb"]["int8"]["exported"] and "tree" in models["hgb"]["int8"]["reason"]


def test_parity_outside_its_bound_writes_nothing(fraud_export, tmp_path):
    from domains.common.errors import PipelineError
    from domains.common.export import ExportRequest, export

    repo = fraud_export["repo"]
    out = tmp_path / "exports" / "strict"
    # Tolerance 0 for the linear model: float32 ONNX against float64 scikit-learn is never bit-equal.
    with pytest.raises(PipelineError) as err:
        export(repo, ExportRequest("fraud", out=out, tolerances={"linear": 0.0}))
    message = str(err.value)
    assert "\n" not in message and "logreg" in message and "max |p_onnx - p_ref| = " in message
    assert "nothing written" in message
    assert not out.parent.exists()  # not even an empty folder


def test_no_champion_is_one_line_and_writes_nothing(fraud_export):
    proc = fraud_export["no_champion"]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "no champion yet" in proc.stderr
    assert not fraud_export["written_before_promotion"]


def _trained_in_process(root: Path, domain: str, section: dict) -> Path:
    """acquire -> train in this process (its torch and exporter imports are shared), no DVC: the domain's own
    export function and the shared checks are what these tests are about; `aiflow export`'s model and split
    lookup through DVC is proven on fraud above."""
    from aiflow.cli import main
    from tests.conftest import write_params

    (root / "registry").mkdir(parents=True)
    write_params(root, domain, section)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIFLOW_ROOT", str(root))
        for stage in ("acquire", "validate", "prepare", "train"):
            assert main(["stage", stage, domain]) == 0, f"{stage} {domain} failed"
    return root


def _exported(root: Path, domain: str, section: dict, out: Path) -> tuple[dict, object]:
    from domains.common.export import TOLERANCES, convert_all
    from domains.common.registry import load_spec

    spec = load_spec(domain)
    exportable = spec.export(
        spec.params_model.model_validate(section), root / "data" / domain / "train", root / "data" / domain / "prepare"
    )
    out.mkdir()
    return convert_all(exportable, out, TOLERANCES, True, domain), exportable


@pytest.fixture(scope="module")
def sentiment_export(tmp_path_factory) -> dict:
    from tests.sentiment.conftest import small_sentiment_params

    section = small_sentiment_params()
    repo = _trained_in_process(tmp_path_factory.mktemp("export-sentiment"), "sentiment", section)
    out = repo / "export"
    models, exportable = _exported(repo, "sentiment", section, out)
    return {"repo": repo, "out": out, "models": models, "exportable": exportable}


def test_sentiment_models_exported_within_parity_and_the_rest_named(sentiment_export):
    models, exportable, out = sentiment_export["models"], sentiment_export["exportable"], sentiment_export["out"]
    assert set(models) == {"nbsvm", "fasttext"}
    assert set(exportable.not_converted) == {"tfidf_logreg", "ensemble"}  # one line each, with the reason
    assert all("\n" not in reason for reason in exportable.not_converted.values())
    for name, figures in models.items():
        assert figures["parity"]["passed"] and figures["parity"]["max_abs_diff"] <= 1e-5, name
        assert figures["parity"]["items"] == len(exportable.labels) > 0
    assert exportable.class_names == ["neg", "pos"]
    vocabulary = (out / "fasttext_vocabulary.tsv").read_text().splitlines()
    assert vocabulary and all(len(line.split("\t")) == 2 for line in vocabulary)
    preprocessing = json.loads((out / "preprocessing.json").read_text())
    assert set(preprocessing["models"]["fasttext"]["inputs"]) == {"ids", "lengths"}
    q = models["fasttext"]["int8"]
    assert q["size_ratio"] < 1 and (q["exported"] == (abs(q["change_points"]) <= 1.0))
    assert (out / "fasttext.int8.onnx").is_file() == q["exported"]


def test_sentiment_export_scores_text_through_its_documented_preprocessing(sentiment_export):
    """From raw text to P(positive) with only the export folder: tokenise, n-grams, vocabulary, graph."""
    from domains.sentiment.export import padded
    from domains.sentiment.score import count_over
    from domains.sentiment.text import tokenise
    from tests.sentiment.conftest import small_sentiment_params

    out = sentiment_export["out"]
    rows = dict(line.split("\t") for line in (out / "fasttext_vocabulary.tsv").read_text().splitlines())
    texts = ["a truly wonderful film, not boring at all!", "dull and badly acted; not good"]
    tokens = [tokenise(t) for t in texts]
    ngram_max = json.loads((out / "preprocessing.json").read_text())["models"]["fasttext"]["ngram_max"]
    grams = [{" ".join(t[i : i + n]) for n in range(1, ngram_max + 1) for i in range(len(t) - n + 1)} for t in tokens]
    ids = [[int(rows[g]) for g in doc if g in rows] for doc in grams]
    width = max(2, *map(len, ids))
    feed = {
        "ids": np.array([d + [0] * (width - len(d)) for d in ids], dtype=np.int64),
        "lengths": np.array([len(d) for d in ids], dtype=np.int64),
    }
    session = ort.InferenceSession(str(out / "fasttext.onnx"), providers=["CPUExecutionProvider"])
    (p,) = session.run(["probabilities"], feed)
    # The same documents through the scoring path's own counting and padding.
    import pandas as pd
    import torch

    from domains.sentiment.fasttext import load_fasttext

    repo = sentiment_export["repo"]
    vocabulary = pd.read_parquet(repo / "data" / "sentiment" / "train" / "vocabulary.parquet")
    counts = count_over(tokens, vocabulary["ngram"], small_sentiment_params()["prepare"]["ngram_max"])
    reference = load_fasttext(repo / "data" / "sentiment" / "train" / "fasttext.pt")(counts)[:, 1]
    assert np.abs(p[:, 1] - reference).max() <= 1e-5
    saved = torch.load(repo / "data" / "sentiment" / "train" / "fasttext.pt", weights_only=True)
    ids_ref, lengths_ref = padded(counts, saved["columns"].numpy(), saved["rows"].numpy())
    assert sorted(map(sorted, ids)) == sorted(sorted(r[:n].tolist()) for r, n in zip(ids_ref, lengths_ref))


def test_medical_cnn_and_baselines_exported_and_int8_is_static_qdq(tmp_path):
    import onnx

    from tests.medical.conftest import small_medical_params

    section = small_medical_params()
    root = _trained_in_process(tmp_path / "repo", "medical", section)
    models, exportable = _exported(root, "medical", section, tmp_path / "export")
    assert set(models) == {"logreg", "hgb", "cnn"}
    for name, figures in models.items():
        assert figures["parity"]["passed"], (name, figures["parity"])
    assert models["hgb"]["parity"]["max_abs_diff"] <= 1e-4 and models["cnn"]["parity"]["max_abs_diff"] <= 1e-5
    # The image and its mirror (tta) go through one CNN in the graph: each convolution appears once.
    import torch

    from domains.medical.train import CNN, load_cnn, model_file

    cnn = load_cnn(model_file(root / "data/medical/train", CNN))
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in cnn.modules())
    f32_ops = [node.op_type for node in onnx.load(tmp_path / "export" / "cnn.onnx").graph.node]
    assert section["train"]["tta"] and f32_ops.count("Conv") == convs
    q = models["cnn"]["int8"]
    assert q["method"].startswith("static QDQ") and q["exported"] == (abs(q["change_points"]) <= 1.0)
    if not q["exported"]:  # float32 only, and it says why
        assert "float32 only" in q["reason"] and not (tmp_path / "export" / "cnn.int8.onnx").exists()
    else:
        ops = {node.op_type for node in onnx.load(tmp_path / "export" / "cnn.int8.onnx").graph.node}
        assert "QuantizeLinear" in ops and "ConvInteger" not in ops  # runs on the CPU provider
        assert "BatchNormalization" not in ops  # folded into the convolutions before quantizing


@pytest.fixture(scope="module")
def defects_export(tmp_path_factory) -> dict:
    """The defects end-to-end build (tests/defects/test_pipeline_e2e.py: both synthetic categories, a model of each
    kind per category, DRAEM at a tiny size), exported in-process through `aiflow export`'s own function: model
    and split found by their DVC hashes. Each graph routes an image to its category's network."""
    from domains.common.export import ExportRequest, export
    from tests.defects.conftest import small_defects_params, with_draem

    repo = trained_copy(tmp_path_factory, "defects", with_draem(small_defects_params(), "both"))
    out = repo / "export"
    manifest = export(repo, ExportRequest("defects", "candidate", int8=True, out=out))
    return {"repo": repo, "out": out, "manifest": manifest}


def test_defect_models_exported_with_map_and_score_parity_and_the_rest_named(defects_export):
    from domains.defects.metrics import image_scores
    from domains.defects.train import load_model, score_maps, split_images

    manifest, out, repo = defects_export["manifest"], defects_export["out"], defects_export["repo"]
    thresholds = json.loads((repo / "data/defects/train/thresholds.json").read_text())
    assert set(manifest["models"]) == {"segmenter", "draem"}
    assert set(manifest["not_converted"]) == {"patch_gaussian"}  # one line, with the reason
    assert all("\n" not in reason for reason in manifest["not_converted"].values())
    images = split_images(repo / "data/defects/prepare", "test")
    pool = json.loads((out / "preprocessing.json").read_text())["score_pooling"]["score_pool"]
    for name, figures in manifest["models"].items():
        parity = figures["parity"]
        assert parity["passed"] and parity["map"]["passed"], (name, parity)
        assert parity["max_abs_diff"] <= 1e-4 == parity["tolerance"]  # a score is a box average of the map's values
        assert parity["map"]["max_abs_diff"] <= 1e-4 == parity["map"]["tolerance"] and parity["in_model_units"]
        assert parity["items"] == manifest["test_items"] == len(images) > 0 and parity["decisions_differ"] == 0
        assert figures["threshold"] == thresholds[name]
        # The file on disk against the trained model, independently of the manifest.
        session = ort.InferenceSession(str(out / figures["file"]), providers=["CPUExecutionProvider"])
        maps, scores = session.run(["map", "score"], {"x": images})
        reference = score_maps(name, load_model(repo / "data/defects/train", name), images)
        assert maps.shape == reference.shape and np.abs(maps - reference).max() <= 1e-4
        ref_scores = image_scores(reference, pool)
        assert np.abs(scores - ref_scores).max() <= 1e-4
        assert ((scores >= thresholds[name]) == (ref_scores >= thresholds[name])).all()
        q = figures["int8"]
        assert q["method"].startswith("static QDQ") and q["exported"] == (abs(q["change_points"]) <= 1.0)
        # the route's distances and argmin stay float32, and so do the stems that read the pixels
        assert q["method"].endswith("Conv only, the input's convolutions in float32")
        assert len(q["float16_constants"]) == 1  # the route's thumbnails (named by the exporter)
        assert (out / f"{name}.int8.onnx").is_file() == q["exported"]
    preprocessing = json.loads((out / "preprocessing.json").read_text())
    assert preprocessing["thresholds"] == thresholds and preprocessing["image"]["layout"] == "NCHW"
    assert preprocessing["categories"]["names"] == ["surface", "part"]


def test_defects_map_outside_its_bound_writes_nothing(defects_export, tmp_path):
    from domains.common.errors import PipelineError
    from domains.common.export import ExportRequest, export

    out = tmp_path / "exports" / "strict"
    with pytest.raises(PipelineError) as err:
        export(defects_export["repo"], ExportRequest("defects", "candidate", out=out, tolerances={"map": 0.0}))
    message = str(err.value)
    assert "\n" not in message and "max |map_onnx - map_ref| = " in message
    assert any(f"candidate {name}:" in message for name in ("segmenter", "draem"))
    assert not out.parent.exists()


def _graph_file(path: Path, nodes: list, inputs: dict, initializers: dict) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in initializers.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_first_convolutions_are_the_ones_reading_the_input(tmp_path):
    """Kept float32 in the defects' int8: a stem, and a convolution of a scaled input; not one after a conv."""
    from onnx import helper

    from domains.common.export import first_convolutions

    w = {f"w{i}": np.ones((2, 2, 3, 3), np.float32) for i in (1, 2, 3)} | {"s": np.float32(2.0)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], "stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"], "relu"),
        helper.make_node("Conv", ["r", "w2"], ["b"], "after_stem", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["x", "s"], ["xs"], "scale"),
        helper.make_node("Conv", ["xs", "w3"], ["c"], "of_scaled_input", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["b", "c"], ["y"], "add"),
    ]
    file = _graph_file(tmp_path / "g.onnx", nodes, {"x": [1, 2, 8, 8]}, w)
    assert first_convolutions(file) == ["stem", "of_scaled_input"]


def test_float16_constants_shrink_the_file_and_keep_the_output(tmp_path):
    import onnx
    from onnx import helper

    from domains.common.export import float16_constants

    rng = np.random.default_rng(0)
    weights = {"big": rng.normal(size=(64, 128)).astype(np.float32), "bias": rng.normal(size=128).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "big"], ["m"]), helper.make_node("Add", ["m", "bias"], ["y"])]
    file = _graph_file(tmp_path / "g.onnx", nodes, {"x": [3, 64]}, weights)
    x = rng.normal(size=(3, 64)).astype(np.float32)
    before, size = ort.InferenceSession(str(file)).run(None, {"x": x})[0], file.stat().st_size
    assert float16_constants(file) == ["big"]
    stored = {t.name: t.data_type for t in onnx.load(str(file)).graph.initializer}
    assert stored == {"big_float16": onnx.TensorProto.FLOAT16, "bias": onnx.TensorProto.FLOAT}  # small ones stay
    assert file.stat().st_size < 0.6 * size
    after = ort.InferenceSession(str(file)).run(None, {"x": x})[0]
    assert after.dtype == np.float32 and np.abs(after - before).max() <= 1e-2 * np.abs(before).max()
    assert np.abs(after - before).max() > 0  # float16 did round
    huge = _graph_file(tmp_path / "huge.onnx", nodes, {"x": [3, 64]}, {**weights, "big": weights["big"] * 1e5})
    assert float16_constants(huge) == []  # beyond float16's range: left float32


@pytest.mark.parametrize("pool, size", [(0.04, (48, 48)), (0.04, (128, 128)), (0.1, (30, 40)), (0.0, (20, 20))])
def test_the_graphs_image_score_is_metrics_image_scores(pool, size):
    """The box filter and maximum the defect graphs compute, against scipy's (odd and even sides, none)."""
    import torch

    from domains.defects.export import _ImageScore
    from domains.defects.metrics import image_scores

    maps = np.random.default_rng(0).random((3, *size)).astype(np.float32)
    assert np.abs(_ImageScore(pool)(torch.from_numpy(maps)).numpy() - image_scores(maps, pool)).max() <= 1e-6


@pytest.fixture(scope="module")
def recsys_export(tmp_path_factory) -> dict:
    """The session's recsys build, exported through `aiflow export`'s own function (found by DVC hashes)."""
    from domains.common.export import ExportRequest, export
    from tests.recsys.conftest import small_recsys_params

    repo = trained_copy(tmp_path_factory, "recsys", small_recsys_params())
    out = repo / "export"
    manifest = export(repo, ExportRequest("recsys", "candidate", int8=True, out=out))
    return {"repo": repo, "out": out, "manifest": manifest}


def test_recsys_models_exported_with_top_k_parity_and_the_rest_named(recsys_export):
    manifest, out = recsys_export["manifest"], recsys_export["out"]
    models = manifest["models"]
    assert set(models) == {"mf", "ease", "item_knn", "bpr", "vae"}
    for name, figures in models.items():
        parity = figures["parity"]
        assert parity["passed"] and parity["top_k"] == 10, (name, parity)
        assert parity["max_abs_diff"] <= 1e-5 * parity["score_scale"] == parity["tolerance"], (name, parity)
        assert parity["decisions_differ"] == 0 and parity["items"] > 0
        assert not figures["int8"]["exported"] and "recommender" in figures["int8"]["reason"]
    assert set(manifest["not_converted"]) == {"svdpp", "knn_baseline", "popularity"}
    assert manifest["threshold"] is None and manifest["model"]["scoring_model"] == "ease"
    surprise = json.loads((out / "preprocessing.json").read_text())["surprise_factors"]
    assert set(surprise["files"]) == {"svd", "baseline_only"}
    for name, figures in surprise["parity"].items():
        assert figures["pairs"] > 0 and figures["max_abs_diff"] <= 1e-5, (name, figures)
        assert (out / f"{name}.factors.npz").is_file()


@pytest.mark.parametrize("model", ["ease", "bpr"])
def test_recsys_export_recommends_what_the_model_recommends(recsys_export, model):
    """From raw ids to a top-10 list with only the export folder, against `recommend` on the trained model."""
    import pandas as pd

    from domains.recsys.recommend import recommend

    repo, out = recsys_export["repo"], recsys_export["out"]
    ratings = pd.read_parquet(repo / "data" / "recsys" / "prepare" / "ratings.parquet")
    train = ratings[~ratings["holdout"]]
    items = np.array(json.loads((out / f"{model}.item_ids.json").read_text()))
    users = np.sort(train["user_id"].unique())[:5]
    rated = np.zeros((len(users), len(items)), dtype=np.float32)
    for row, user in enumerate(users):
        rated[row, np.isin(items, train.loc[train["user_id"] == user, "item_id"])] = 1.0
    if model == "bpr":
        rows = {u: r for r, u in enumerate(json.loads((out / "bpr.user_ids.json").read_text()))}
        feed = {"user": np.array([rows[u] for u in users], dtype=np.int64)}
    else:
        feed = {"history": rated}
    (scores,) = ort.InferenceSession(out / f"{model}.onnx").run(["scores"], feed)
    top = np.argsort(-np.where(rated > 0, -np.inf, scores), axis=1, kind="stable")[:, :10]
    expected, _ = recommend(repo / "data" / "recsys" / "train", model, train, users, "cpu")
    assert (np.sort(items[top], axis=1) == np.sort(expected, axis=1)).all()
