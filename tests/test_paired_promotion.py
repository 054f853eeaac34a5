"""Issue 19: promotion on the paired difference with the champion on the same units, slices that
block promotion, and the params that say what is wrong in one line."""

import dataclasses
import hashlib
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from domains.common import assess, units
from domains.common.contract import Evaluation
from domains.common.errors import ParamsError
from domains.common.registry import load_params
from domains.common.stages import decide
from domains.fraud import DOMAIN
from domains.fraud.params import FraudParams
from tests.conftest import small_fraud_params, write_params

GATE_OK = {"verdict": "pass", "checks": []}


def _params(**evaluate) -> FraudParams:
    raw = small_fraud_params()
    raw["evaluate"].update(resamples=400, **evaluate)
    return FraudParams.model_validate(raw)


# --- a toy domain whose "model" is a weight on the true signal: its evaluate really scores the split ---


def _split(seed: int, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "row": np.arange(n),
            "unit": rng.integers(0, n // 3, n),
            "label": (rng.random(n) < 0.15).astype(int),
            "noise": rng.normal(size=n),
        }
    )


def _toy_evaluate(params, prepared_dir, train_dir, out_dir) -> Evaluation:
    test = pd.read_parquet(prepared_dir / "test.parquet")
    model = json.loads((train_dir / "model.json").read_text())
    frame = test[["row", "unit", "label"]].copy()
    frame["mlp:p1"] = model["weight"] * test["label"] + test["noise"]
    frame["slice:amount"] = test["row"] % 200
    frame["slice:hour"] = test["row"] % 24
    return Evaluation(metrics={"mlp": {"average_precision": 0.0}}, units=frame)


TOY = dataclasses.replace(DOMAIN, evaluate=_toy_evaluate)


def _dvc_root(tmp_path):
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def _to_cache(root, files: dict[str, bytes]) -> str:
    """Files into the DVC cache the way `dvc commit` stores a directory: objects and a '.dir' listing."""
    from domains.common.modelstore import _cache_dir, _object

    cache, listing = _cache_dir(root), []
    for name, data in sorted(files.items()):
        md5 = hashlib.md5(data).hexdigest()
        _object(cache, md5).parent.mkdir(parents=True, exist_ok=True)
        _object(cache, md5).write_bytes(data)
        listing.append({"md5": md5, "relpath": name})
    blob = json.dumps(listing).encode()
    md5 = hashlib.md5(blob).hexdigest()
    _object(cache, md5 + ".dir").parent.mkdir(parents=True, exist_ok=True)
    _object(cache, md5 + ".dir").write_bytes(blob)
    return md5 + ".dir"


def _prepared(tmp_path, seed):
    prepared = tmp_path / f"prepared{seed}"
    prepared.mkdir()
    _split(seed).to_parquet(prepared / "test.parquet")
    return prepared


def _scored(prepared, weight, tmp_path):
    train = tmp_path / f"train{weight}"
    train.mkdir(exist_ok=True)
    (train / "model.json").write_text(json.dumps({"weight": weight}))
    return _toy_evaluate(None, prepared, train, None).units


def test_the_champions_saved_predictions_are_reused_on_the_same_split(tmp_path):
    root, params = _dvc_root(tmp_path), _params()
    prepared = _prepared(tmp_path, 1)
    theirs, ours = _scored(prepared, 1.0, tmp_path), _scored(prepared, 2.0, tmp_path)
    theirs.to_parquet(tmp_path / "p.parquet")
    saved = tmp_path / "p.parquet"
    md5 = hashlib.md5(saved.read_bytes()).hexdigest()
    _to_cache(root, {"x": saved.read_bytes()})  # puts the file's object in the cache
    champion = {
        "version": 2,
        "model": "mlp",
        "metrics": {"average_precision": 0.5},
        "train_md5": "0" * 32 + ".dir",  # not in the cache: re-scoring would fail, so success means reuse
        "test_hash": units.split_hash(ours),
        "predictions_md5": md5,
    }
    result = assess.compare(root, TOY, params, ours, champion, prepared)
    assert isinstance(result, units.Paired) and not result.rescored and result.low > 0


def test_a_champion_is_rescored_when_the_split_changed(tmp_path):
    root, params = _dvc_root(tmp_path), _params()
    old, new = _prepared(tmp_path, 1), _prepared(tmp_path, 2)
    model_md5 = _to_cache(root, {"model.json": json.dumps({"weight": 1.0}).encode()})
    champion = {
        "version": 3,
        "model": "mlp",
        "metrics": {"average_precision": 0.5},
        "train_md5": model_md5,
        "test_hash": units.split_hash(_scored(old, 1.0, tmp_path)),
        "predictions_md5": "f" * 32,
    }
    ours = _scored(new, 1.0, tmp_path)  # the same model: on the new split, no difference at all
    result = assess.compare(root, TOY, params, ours, champion, new)
    assert isinstance(result, units.Paired) and result.rescored
    assert result.difference == 0 and result.low == result.high == 0
    decision = decide(
        TOY, params, {"mlp": {"auroc": 0.9, "average_precision": 0.6}}, GATE_OK, champion, comparison=result
    )
    assert decision["decision"] == "keep" and "champion re-scored on this split" in decision["reason"]

    gone = {**champion, "train_md5": "1" * 32 + ".dir"}
    why = assess.compare(root, TOY, params, ours, gone, new)
    assert isinstance(why, str) and "evaluated on another split" in why and "re-scoring it failed" in why
    decision = decide(TOY, params, {"mlp": {"auroc": 0.9, "average_precision": 0.6}}, GATE_OK, gone, comparison=why)
    assert "point estimates only, not paired: champion v3 could not be compared" in decision["reason"]


def _paired(challenger_weight, champion_weight=1.0, seed=5):
    """Same split, two models; the challenger differs by `challenger_weight` and by its own seed's noise."""
    split = _split(seed)
    rng = np.random.default_rng(seed + 100)
    frame = split[["row", "unit", "label"]].copy()
    frame["mlp:p1"] = challenger_weight * split["label"] + split["noise"] + 0.3 * rng.normal(size=len(split))
    champion = split[["row", "unit", "label"]].copy()
    champion["hgb:p1"] = champion_weight * split["label"] + split["noise"] + 0.3 * rng.normal(size=len(split))
    return units.paired(frame, "mlp", champion, "hgb", "average_precision", "average_precision", True, 1000, 0)


def test_seed_noise_keeps_the_champion_and_a_clear_improvement_replaces_it():
    champion = {"version": 1, "model": "hgb", "metrics": {"average_precision": 0.70}}
    metrics = {"mlp": {"auroc": 0.9, "average_precision": 0.71}}  # higher point estimate: the old rule promoted it
    noise = decide(DOMAIN, _params(), metrics, GATE_OK, champion, comparison=_paired(1.0))
    assert noise["decision"] == "keep" and "lower bound not above evaluate.margin 0" in noise["reason"]
    assert noise["comparison"]["paired"] and "95% CI" in noise["reason"]
    better = decide(DOMAIN, _params(), metrics, GATE_OK, champion, comparison=_paired(2.0))
    assert better["decision"] == "promote" and "lower bound above evaluate.margin" in better["reason"]
    newer = decide(
        DOMAIN, _params(non_inferiority={"margin": 0.05}), metrics, GATE_OK, champion, comparison=_paired(1.0)
    )
    assert (
        newer["decision"] == "promote"
        and "not worse by more than non_inferiority.margin 0.05, and newer" in newer["reason"]
    )


def test_non_inferior_and_cheaper_by_policy():
    from domains.sentiment import DOMAIN as SENTIMENT
    from domains.sentiment.params import SentimentParams
    from tests.sentiment.conftest import small_sentiment_params

    raw = small_sentiment_params()
    raw["evaluate"].update(non_inferiority={"margin": 0.05, "prefer": "cheaper", "cost_metric": "predict_seconds"})
    params = SentimentParams.model_validate(raw)
    champion = {"version": 1, "model": "hgb", "metrics": {"accuracy": 0.9, "predict_seconds": 2.0}}
    candidate = params.evaluate.candidate
    tie = dataclasses.replace(_paired(1.0), metric="accuracy")
    cheaper = decide(
        SENTIMENT, params, {candidate: {"accuracy": 0.9, "predict_seconds": 1.0}}, GATE_OK, champion, comparison=tie
    )
    assert cheaper["decision"] == "promote" and "and cheaper (predict_seconds 1 < 2)" in cheaper["reason"]
    dearer = decide(
        SENTIMENT, params, {candidate: {"accuracy": 0.9, "predict_seconds": 3.0}}, GATE_OK, champion, comparison=tie
    )
    assert dearer["decision"] == "keep" and "but not cheaper on predict_seconds" in dearer["reason"]


def test_a_model_that_fails_one_slice_is_named_and_blocked():
    split = _split(7, n=3000)
    frame = split[["row", "unit", "label"]].copy()
    frame["slice:hour"] = split["row"] % 24
    frame["slice:amount"] = split["row"] % 200
    night = frame["slice:hour"] < 6
    frame["mlp:p1"] = np.where(night, 0, 2.0 * split["label"]) + split["noise"]  # blind at night
    params = _params(
        slices={"hour": {"column": "hour", "bins": [6, 12, 18]}, "amount": {"column": "amount", "bins": [100]}}
    )
    verdict = assess.slices(frame, DOMAIN, params)
    assert verdict.worst["slice"] == "hour" and verdict.worst["group"] == "< 6"
    summary = verdict.summary()
    metrics = {"mlp": {"auroc": 0.9, "average_precision": 0.7}}
    assert decide(DOMAIN, params, metrics, GATE_OK, None, slices=summary)["decision"] == "promote"  # off by default
    blocked = decide(
        DOMAIN,
        _params(min_slice_metric=0.4, slices=params.evaluate.model_dump()["slices"]),
        metrics,
        GATE_OK,
        None,
        slices=summary,
    )
    assert blocked["decision"] == "keep" and blocked["reason"].startswith("slice hour=< 6: average_precision")


def test_protected_slices_show_the_gap_and_small_groups_are_not_judged():
    split = _split(8, n=2000)
    frame = split[["row", "unit", "label"]].copy()
    frame["slice:hour"] = np.where(split["row"] < 1990, "a", "b")  # b: 10 rows, a handful of units
    frame["mlp:p1"] = split["label"] + split["noise"]
    params = _params(min_slice_size=30, slices={"g": {"column": "hour", "protected": True}})
    verdict = assess.slices(frame, DOMAIN, params)
    statuses = dict(
        zip(verdict.table.query("model == 'mlp'")["group"], verdict.table.query("model == 'mlp'")["status"])
    )
    assert statuses["a"] == "ok" and statuses["b"].startswith("too small")
    assert verdict.gaps == []  # one judged group: no gap to show
    frame["slice:hour"] = np.where(split["row"] % 2 == 0, "even", "odd")
    frame.loc[frame["slice:hour"] == "odd", "mlp:p1"] = split["noise"]
    gaps = assess.slices(frame, DOMAIN, params).gaps
    assert gaps[0]["best"] == "even" and gaps[0]["worst"] == "odd" and gaps[0]["gap"] > 0.2


@pytest.mark.parametrize(
    "evaluate, message",
    [
        (
            {"slices": {"amt": {"column": "amnt"}}},
            "fraud.evaluate.slices.amt.column: 'amnt' is not a slice column of fraud",
        ),
        ({"slices": {"amt": {"column": "amount", "bins": "high"}}}, "fraud.evaluate.slices.amt.bins"),
        ({"slices": {"amt": ["amount"]}}, "fraud.evaluate.slices.amt"),
        ({"resamples": 50}, "fraud.evaluate.resamples: Input should be greater than or equal to 100"),
        ({"margin": 1.5}, "fraud.evaluate.margin: 1.5 is outside the range of average_precision differences"),
        ({"non_inferiority": {"margin": 2}}, "fraud.evaluate.non_inferiority.margin: 2"),
        (
            {"non_inferiority": {"margin": 0.01, "prefer": "cheaper"}},
            "fraud.evaluate.non_inferiority.cost_metric: 'predict_seconds' is not a metric of fraud",
        ),
        (
            {"slices": {"amt": {"column": "amount", "metric": "f1"}}},
            "fraud.evaluate.slices.amt.metric: 'f1' has no per-unit",
        ),
        ({"min_slice_metric": 1.2}, "fraud.evaluate.min_slice_metric: 1.2 is outside average_precision's range"),
    ],
)
def test_bad_evaluate_params_stop_in_one_line_naming_the_key(tmp_path, evaluate, message):
    raw = small_fraud_params()
    raw["evaluate"].update(evaluate)
    write_params(tmp_path, "fraud", raw)
    with pytest.raises(ParamsError) as err:
        load_params(tmp_path, "fraud")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_slice_the_source_never_has_is_skipped_and_one_it_should_have_is_named(tmp_path):
    raw = small_fraud_params()
    raw["data"] = {"source": "ulb", "path": "creditcard.csv"}
    params = FraudParams.model_validate(raw)  # the default slices run on every source: ULB has no card history
    assert assess.unavailable(DOMAIN, params) == {
        "history": "history is not in ulb data (only in: synthetic, handbook)"
    }
    frame = _split(3)[["row", "unit", "label"]].assign(**{"mlp:p1": 0.5, "slice:amount": 1.0})
    with pytest.raises(
        ParamsError, match=r"^params.yaml: fraud.evaluate.slices.hour.column: 'hour' is not in ulb data$"
    ):
        assess.check_slice_columns(DOMAIN, params, frame)


def test_a_reference_group_joins_every_group_and_is_no_group_itself():
    """Defects by type: each type's AUROC against the good images, as per_type_auroc computes it."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(9)
    kinds = np.array(["good"] * 60 + ["crack"] * 20 + ["spot"] * 20)
    score = rng.normal(size=100) + np.where(kinds == "crack", 2.0, np.where(kinds == "spot", 0.2, 0.0))
    frame = pd.DataFrame(
        {
            "row": np.arange(100),
            "unit": np.arange(100),
            "label": (kinds != "good").astype(int),
            "mlp:p1": score,
            "slice:type": kinds,
        }
    )
    spec = units.SliceSpec("type", "type", None, False, "auroc", "auroc", reference="good")
    table = units.slice_table(frame, [spec], "mlp", 10, 200, 0).set_index("group")
    assert set(table.index) == {"crack", "spot"} and (table["units"] == 20).all()
    for kind in ("crack", "spot"):
        keep = (kinds == kind) | (kinds == "good")
        assert table.loc[kind, "value"] == pytest.approx(roc_auc_score(kinds[keep] != "good", score[keep]))
    assert units.worst_slice(table.reset_index(), "mlp", "auroc", True)["group"] == "spot"
