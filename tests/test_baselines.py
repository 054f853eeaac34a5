"""Promotion relative to the domain's baselines: the candidate must beat them on the promotion metric by
`evaluate.baseline_margin`; a margin outside the metric's range is a one-line error before any work."""

from __future__ import annotations

import pytest

from aiflow.cli import main
from domains.common.errors import ParamsError, PipelineError
from domains.common.registry import load_params
from domains.common.stages import decide
from domains.fraud import DOMAIN as FRAUD
from domains.fraud.params import FraudParams
from domains.recsys import DOMAIN as RECSYS
from domains.recsys.params import RecsysParams
from tests.conftest import small_fraud_params, write_params
from tests.recsys.conftest import small_recsys_params

GATE_OK = {"verdict": "pass", "checks": []}
METRICS = {
    "mlp": {"auroc": 0.90, "average_precision": 0.62},
    "logreg": {"auroc": 0.91, "average_precision": 0.60},
    "hgb": {"auroc": 0.88, "average_precision": 0.64},
}


def _fraud(**evaluate) -> FraudParams:
    raw = small_fraud_params()
    raw["evaluate"].update(thresholds_min={}, **evaluate)
    return FraudParams.model_validate(raw)


def test_a_candidate_that_beats_its_baseline_is_promoted():
    decision = decide(FRAUD, _fraud(baselines=["logreg"]), METRICS, GATE_OK, None)
    assert decision["decision"] == "promote", decision["reason"]
    check = decision["thresholds"][0]
    assert (check["baseline"], check["metric"], check["threshold"], check["passed"]) == (
        "logreg",
        "average_precision",
        0.60,
        True,
    )
    assert check["why"] == "mlp's average_precision 0.6200 beats logreg's 0.6000"  # decision.json reads it as is


def test_the_report_says_which_baseline_was_not_beaten_and_by_how_much():
    decision = decide(FRAUD, _fraud(baselines=["logreg", "hgb"]), METRICS, GATE_OK, None)
    assert decision["decision"] == "keep"
    assert decision["reason"] == "threshold failed: mlp's average_precision 0.6200 does not beat hgb's 0.6400"
    decision = decide(FRAUD, _fraud(baselines=["logreg"], baseline_margin=0.05), METRICS, GATE_OK, None)
    assert decision["reason"].endswith("does not beat logreg's 0.6000 by evaluate.baseline_margin=0.05")


def test_lower_is_better_metrics_beat_their_baseline_downwards():
    raw = small_recsys_params()
    raw["evaluate"].update(primary="rmse", candidate="mf", baselines=["baseline_only"], thresholds_min={})
    params = RecsysParams.model_validate(raw)
    better = {"mf": {"rmse": 0.91}, "baseline_only": {"rmse": 0.94}}
    assert decide(RECSYS, params, better, GATE_OK, None)["decision"] == "promote"
    worse = {"mf": {"rmse": 0.95}, "baseline_only": {"rmse": 0.94}}
    assert "does not beat baseline_only's 0.9400" in decide(RECSYS, params, worse, GATE_OK, None)["reason"]


def test_a_baseline_that_was_not_trained_or_lacks_the_metric_is_an_error_naming_the_key():
    with pytest.raises(
        PipelineError, match=r"^evaluate.baselines: 'svm' is not a trained model; models: mlp, logreg, hgb$"
    ):
        decide(FRAUD, _fraud(baselines=["svm"]), METRICS, GATE_OK, None)
    raw = small_recsys_params()
    raw["evaluate"].update(primary="rmse", candidate="mf", baselines=["popularity"], thresholds_min={})
    with pytest.raises(PipelineError, match=r"^evaluate.baselines: 'popularity' has no rmse .*: baseline_only$"):
        decide(
            RECSYS,
            RecsysParams.model_validate(raw),
            {"mf": {"rmse": 0.9}, "baseline_only": {"rmse": 0.94}, "popularity": {"ndcg_at_10": 0.2}},
            GATE_OK,
            None,
        )


@pytest.mark.parametrize(
    "domain, section, margin, expected",
    [
        (
            "fraud",
            small_fraud_params,
            1.5,
            "params.yaml: fraud.evaluate.baseline_margin: 1.5 is outside the range of average_precision (0 to 1)",
        ),
        ("fraud", small_fraud_params, -1.0, "params.yaml: fraud.evaluate.baseline_margin: -1.0 is outside the range"),
        (
            "recsys",
            small_recsys_params,
            2.0,
            "params.yaml: recsys.evaluate.baseline_margin: 2.0 is outside the range of ndcg_at_10",
        ),
    ],
)
def test_a_margin_outside_the_metric_range_is_one_line_before_any_work(
    domain, section, margin, expected, tmp_path, monkeypatch, capsys
):
    raw = section()
    raw["evaluate"]["baseline_margin"] = margin
    write_params(tmp_path, domain, raw)
    with pytest.raises(ParamsError) as err:
        load_params(tmp_path, domain)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    monkeypatch.setenv("AIFLOW_ROOT", str(tmp_path))
    assert main(["stage", "acquire", domain]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {err.value}"]
    assert not (tmp_path / "data" / domain / "acquire").exists()  # stopped before any work


def test_an_unbounded_metric_takes_any_margin(tmp_path):
    raw = small_recsys_params()
    raw["evaluate"].update(primary="rmse", candidate="mf", baselines=["baseline_only"], baseline_margin=0.02)
    write_params(tmp_path, "recsys", raw)
    assert load_params(tmp_path, "recsys").evaluate.baseline_margin == 0.02


def test_the_candidate_cannot_be_its_own_baseline(tmp_path):
    raw = small_fraud_params()
    raw["evaluate"]["baselines"] = ["mlp"]
    write_params(tmp_path, "fraud", raw)
    with pytest.raises(
        ParamsError,
        match=r"^params.yaml: fraud.evaluate: baselines: the candidate 'mlp' "
        r"cannot be its own baseline",
    ):
        load_params(tmp_path, "fraud")
