"""The CLI's help and the promote/keep decision."""

import pytest

from aiflow.cli import main
from domains.common.contract import MetricContract
from domains.common.stages import decide
from domains.fraud import DOMAIN
from domains.fraud.params import FraudParams
from tests.conftest import small_fraud_params


def test_help_shows_worked_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "aiflow run fraud" in out and "dvc exp run -S fraud.train.lr=0.003" in out


def _gate(warnings: int = 0) -> dict:
    return {
        "verdict": "warn" if warnings else "pass",
        "checks": [{"passed": False, "severity": "warn"}] * warnings + [{"passed": True, "severity": "block"}],
    }


def _params(**evaluate) -> FraudParams:
    raw = small_fraud_params()
    raw["evaluate"].update(evaluate)
    return FraudParams.model_validate(raw)


METRICS = {"mlp": {"auroc": 0.9, "average_precision": 0.7}, "hgb": {"auroc": 0.88, "average_precision": 0.72}}


def test_first_model_passing_thresholds_is_promoted():
    decision = decide(DOMAIN, _params(thresholds_min={"auroc": 0.8}), METRICS, _gate(), None)
    assert decision["decision"] == "promote" and "no champion yet" in decision["reason"]


def test_failed_threshold_keeps():
    decision = decide(DOMAIN, _params(thresholds_min={"auroc": 0.95}), METRICS, _gate(), None)
    assert decision["decision"] == "keep" and decision["reason"] == "threshold failed: auroc=0.9000 < 0.95"


def test_gate_warnings_beyond_tolerance_keep():
    decision = decide(DOMAIN, _params(), METRICS, _gate(warnings=1), None)
    assert decision["decision"] == "keep" and "warning" in decision["reason"]


@pytest.mark.parametrize("champion_ap, expected", [(0.65, "promote"), (0.75, "keep")])
def test_challenger_vs_champion(champion_ap, expected):
    champion = {"version": 3, "model": "mlp", "metrics": {"average_precision": champion_ap}}
    assert decide(DOMAIN, _params(), METRICS, _gate(), champion)["decision"] == expected


def test_lower_is_better_metrics():
    contract = MetricContract(primary="rmse", higher_is_better={"rmse": False})
    assert contract.better("rmse", 0.9, 0.95) and not contract.better("rmse", 0.95, 0.9)
