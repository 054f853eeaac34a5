"""Promotion: a worse challenger is kept, a better one becomes champion, a rollback restores the last."""

import json

import pytest

from domains.common import champion
from domains.common.errors import PipelineError
from domains.common.stages import decide
from domains.fraud import DOMAIN
from domains.fraud.params import FraudParams
from tests.conftest import small_fraud_params

GATE_OK = {"verdict": "pass", "checks": []}


def _evaluate(root, average_precision: float) -> dict:
    """Record an evaluation of the mlp challenger the way the evaluate stage does."""
    params = FraudParams.model_validate(small_fraud_params())
    metrics = {"mlp": {"auroc": 0.9, "average_precision": average_precision}}
    decision = decide(DOMAIN, params, metrics, GATE_OK, champion.read_champion(root, "fraud"))
    out = root / "data" / "fraud" / "evaluate"
    out.mkdir(parents=True, exist_ok=True)
    (out / "decision.json").write_text(json.dumps(decision))
    return decision


def test_promote_keep_and_rollback(tmp_path):
    assert _evaluate(tmp_path, 0.70)["decision"] == "promote"
    assert champion.promote(tmp_path, "fraud")["version"] == 1

    worse = _evaluate(tmp_path, 0.60)
    assert worse["decision"] == "keep" and "does not beat champion v1" in worse["reason"]
    with pytest.raises(PipelineError, match="not promoted: average_precision 0.6000 does not beat champion v1"):
        champion.promote(tmp_path, "fraud")
    assert champion.read_champion(tmp_path, "fraud")["metrics"]["average_precision"] == 0.70

    assert _evaluate(tmp_path, 0.80)["decision"] == "promote"
    assert champion.promote(tmp_path, "fraud")["version"] == 2
    assert _evaluate(tmp_path, 0.75)["decision"] == "keep"  # compared against the new champion

    restored = champion.rollback(tmp_path, "fraud")
    assert restored["version"] == 1 and champion.read_champion(tmp_path, "fraud")["version"] == 1
    events = champion.read_registry(tmp_path, "fraud")["events"]
    assert [e["event"] for e in events] == ["promote", "promote", "rollback"]

    assert champion.rollback(tmp_path, "fraud") is None  # back to no champion
    with pytest.raises(PipelineError, match="no champion to roll back"):
        champion.rollback(tmp_path, "fraud")
    assert _evaluate(tmp_path, 0.5)["decision"] == "promote"
    assert champion.promote(tmp_path, "fraud")["version"] == 3  # versions are never reused


def test_promotion_blocked_by_failed_threshold(tmp_path):
    raw = small_fraud_params()
    raw["evaluate"]["thresholds_min"] = {"average_precision": 0.9}
    decision = decide(DOMAIN, FraudParams.model_validate(raw), {"mlp": {"average_precision": 0.8}}, GATE_OK, None)
    assert decision["decision"] == "keep" and decision["reason"].startswith("threshold failed")


def test_the_champion_is_not_its_own_challenger():
    champ = {"version": 4, "model": "mlp", "metrics": {"average_precision": 0.5}, "train_md5": "abc.dir"}
    params = FraudParams.model_validate(small_fraud_params())
    decision = decide(
        DOMAIN, params, {"mlp": {"auroc": 0.9, "average_precision": 0.9}}, GATE_OK, champ, model_md5="abc.dir"
    )
    assert decision["decision"] == "keep" and decision["reason"] == "this model is the champion (v4)"
