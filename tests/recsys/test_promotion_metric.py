"""The promotion metric is a param (`recsys.evaluate.primary`): a metric the domain does not compute, or one the
candidate lacks, is a one-line error naming the key; NDCG@10 decides between challenger and champion."""

from __future__ import annotations

import pytest

from domains.common.errors import ParamsError, PipelineError
from domains.common.registry import load_params
from domains.common.stages import decide
from domains.recsys import DOMAIN
from domains.recsys.params import RecsysParams
from tests.conftest import write_params
from tests.recsys.conftest import small_recsys_params

GATE_OK = {"verdict": "pass", "checks": []}
METRICS = {
    "ease": {"ndcg_at_10": 0.30, "ndcg_over_popularity": 1.5},
    "mf": {"rmse": 0.9, "ndcg_at_10": 0.1},
    "popularity": {"ndcg_at_10": 0.2, "ndcg_over_popularity": 1.0},
}


def _params(**evaluate) -> RecsysParams:
    raw = small_recsys_params()
    raw["evaluate"].update(evaluate)
    return RecsysParams.model_validate(raw)


def test_an_unknown_primary_is_a_one_line_error_naming_the_key(tmp_path):
    raw = small_recsys_params()
    raw["evaluate"]["primary"] = "ndcg_at_20"
    write_params(tmp_path, "recsys", raw)
    with pytest.raises(ParamsError) as err:
        load_params(tmp_path, "recsys")
    message = str(err.value)
    assert message.startswith("params.yaml: recsys.evaluate.primary: ") and "'ndcg_at_20' is not a metric" in message
    assert "ndcg_at_10" in message and "\n" not in message


def test_ndcg_decides_promotion_against_the_champion():
    champion = {"version": 3, "metrics": {"ndcg_at_10": 0.25}}
    decision = decide(DOMAIN, _params(), METRICS, GATE_OK, champion)
    assert decision["primary_metric"] == "ndcg_at_10" and decision["decision"] == "promote"
    assert decision["reason"] == "ndcg_at_10 0.3000 beats champion v3 (0.2500)"
    worse = {"version": 3, "metrics": {"ndcg_at_10": 0.35}}
    assert decide(DOMAIN, _params(), METRICS, GATE_OK, worse)["decision"] == "keep"


def test_the_candidate_must_beat_popularity():
    weak = {**METRICS, "ease": {"ndcg_at_10": 0.19, "ndcg_over_popularity": 0.95}}
    decision = decide(DOMAIN, _params(), weak, GATE_OK, None)
    assert decision["decision"] == "keep"
    assert decision["reason"] == "threshold failed: ease's ndcg_at_10 0.1900 does not beat popularity's 0.2000"
    # A stricter, relative floor is still a param away: 10% over popularity.
    slight = {**METRICS, "ease": {"ndcg_at_10": 0.21, "ndcg_over_popularity": 1.05}}
    assert decide(DOMAIN, _params(), slight, GATE_OK, None)["decision"] == "promote"
    decision = decide(DOMAIN, _params(thresholds_min={"ndcg_over_popularity": 1.1}), slight, GATE_OK, None)
    assert decision["reason"] == "threshold failed: ndcg_over_popularity=1.0500 < 1.1"


def test_a_primary_the_candidate_lacks_is_a_one_line_error():
    with pytest.raises(PipelineError, match=r"^evaluate.primary: the candidate 'ease' has no metric 'rmse' \(it has: "):
        decide(DOMAIN, _params(primary="rmse", thresholds_min={}, baselines=[]), METRICS, GATE_OK, None)


def test_a_rating_model_can_still_be_promoted_on_rmse():
    decision = decide(
        DOMAIN,
        _params(primary="rmse", candidate="mf", thresholds_min={}, baselines=[]),
        METRICS,
        GATE_OK,
        {"version": 1, "metrics": {"rmse": 0.95}},
    )
    assert decision["decision"] == "promote" and decision["reason"].startswith("rmse 0.9000 beats champion v1")


def test_a_champion_never_scored_on_the_primary_is_replaced_by_a_passing_candidate():
    old = {"version": 2, "metrics": {"rmse": 0.91}}  # promoted when rmse decided
    decision = decide(DOMAIN, _params(), METRICS, GATE_OK, old)
    assert decision["decision"] == "promote"
    assert decision["reason"] == "champion v2 was not scored on ndcg_at_10; ease passes every threshold"
