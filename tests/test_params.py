"""params.yaml is validated against typed models: one line naming the key, before any work."""

from pathlib import Path

import pytest

from aiflow.cli import main
from benchmarks import defects as defects_benchmarks
from benchmarks.common import domain_section
from domains.common.errors import ParamsError
from domains.common.registry import load_params
from tests.conftest import small_fraud_params, write_params


def _error(root: Path, fraud: dict) -> str:
    write_params(root, "fraud", fraud)
    with pytest.raises(ParamsError) as err:
        load_params(root, "fraud")
    message = str(err.value)
    assert "\n" not in message
    return message


def test_repository_params_are_valid():
    root = Path(__file__).resolve().parents[1]
    assert load_params(root, "fraud").data.source == "synthetic"


def test_typo_names_the_key_and_suggests(tmp_path):
    params = small_fraud_params()
    params["trian"] = params.pop("train")
    assert _error(tmp_path, params) == "params.yaml: fraud.trian: unknown key (did you mean 'train'?)"


def test_nested_typo(tmp_path):
    params = small_fraud_params()
    params["train"]["lr_rate"] = 0.1
    assert "fraud.train.lr_rate: unknown key" in _error(tmp_path, params)


def test_bad_value_names_the_key(tmp_path):
    params = small_fraud_params()
    params["train"]["lr"] = -1
    message = _error(tmp_path, params)
    assert message.startswith("params.yaml: fraud.train.lr:") and "-1" in message


def test_unknown_source_lists_the_accepted_ones(tmp_path):
    params = small_fraud_params()
    params["data"]["source"] = "kaggle"
    assert _error(tmp_path, params) == (
        "params.yaml: fraud.data.source: unknown source 'kaggle'; accepted: synthetic, handbook, ulb"
    )


def test_cli_reports_bad_params_in_one_line_without_traceback(stage_root, capsys):
    params = small_fraud_params()
    params["gate"]["max_quarantine_fraction"] = 2
    write_params(stage_root, "fraud", params)
    assert main(["stage", "acquire", "fraud"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: params.yaml: fraud.gate.max_quarantine_fraction:") and "Traceback" not in err
    assert not (stage_root / "data" / "fraud" / "acquire").exists()  # nothing ran


def test_unknown_domain_section(stage_root, capsys):
    (stage_root / "params.yaml").write_text("fruad: {}\n")
    assert main(["check-params"]) == 1
    assert (
        "'fruad' is not a domain (did you mean 'fraud'?); available: defects, fraud, medical" in capsys.readouterr().err
    )


def test_defects_baselines_must_be_trained(tmp_path):
    # found by the DRAEM benchmark: it trained 12 minutes, then evaluate stopped on the default baseline
    params = domain_section("defects", {"train": {"models": ["draem"]}, "evaluate": {"candidate": "draem"}})
    write_params(tmp_path, "defects", params)
    with pytest.raises(ParamsError) as err:
        load_params(tmp_path, "defects")
    assert str(err.value) == (
        "params.yaml: defects: evaluate.baselines: 'patch_gaussian' is not trained "
        "(train.models and backbone_weights give draem)"
    )


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in dir(defects_benchmarks)
        if n.startswith("MAGNETIC_TILE") and isinstance(getattr(defects_benchmarks, n), dict)
    ],
)
def test_the_magnetic_tile_benchmarks_params_are_valid(tmp_path, name):
    write_params(tmp_path, "defects", domain_section("defects", getattr(defects_benchmarks, name)))
    assert load_params(tmp_path, "defects").data.source == "magnetic-tile"
