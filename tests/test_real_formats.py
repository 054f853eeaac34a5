"""A user's own data in a real format runs through every stage, in-process, to a report."""

import json
from dataclasses import replace

import pandas as pd

from aiflow.cli import main
from domains.common.contract import ScoreOptions
from domains.common.paths import STAGES
from domains.fraud.params import FraudParams
from domains.fraud.score import read_batch, read_chunks, score_batch
from tests.conftest import small_fraud_params, write_params
from tests.test_bad_inputs import handbook_frame, ulb_frame


def test_ulb_creditcard_csv_runs_to_a_report(stage_root, capsys):
    data_file = stage_root / "creditcard.csv"
    ulb_frame(n=3000, fraud_rate=0.05).to_csv(data_file, index=False)
    params = small_fraud_params()
    params["data"] = {"source": "ulb", "path": str(data_file)}
    # ULB covers two days and has no card or terminal ids: split by the hour.
    params["prepare"].update(split_unit="hour", train_length=24, val_length=6, gap_length=2, test_length=20)
    write_params(stage_root, "fraud", params)
    for stage in STAGES:
        assert main(["stage", stage, "fraud"]) == 0, capsys.readouterr().err
    features = json.loads((stage_root / "data/fraud/prepare/features.json").read_text())["features"]
    assert "v1" in features and not any(f.startswith(("customer_", "terminal_")) for f in features)
    metrics = json.loads((stage_root / "data/fraud/evaluate/metrics.json").read_text())
    assert set(metrics) == {"logreg", "hgb", "mlp"}
    assert (stage_root / "data/fraud/report/report.html").is_file()
    assert (
        "Slice history not cut: history is not in ulb data"
        in (stage_root / "data/fraud/report/report.html").read_text()
    )

    # New transactions in ULB's layout, read and scored in chunks by the fraud domain (read_chunks, score's carry):
    # the bits of the batch scored whole. (The runner around it is tested on the handbook format, with a champion
    # from `dvc repro`; a ULB-trained one costs over a minute more.)
    batch = stage_root / "new_creditcard.csv"
    ulb_frame(n=700, seed=1).drop(columns="Class").to_csv(batch, index=False)
    p = FraudParams.model_validate(params)
    model_dir = stage_root / "data/fraud/train"
    whole = score_batch(p, model_dir, "mlp", read_batch(p, batch, "ulb"), ScoreOptions()).predictions
    parts, options = [], ScoreOptions(chunked=True)
    for table in read_chunks(p, batch, "ulb", 300):  # 300, 300, 100 rows
        scored = score_batch(p, model_dir, "mlp", table, options)
        parts.append(scored.predictions)
        options = replace(options, carry=scored.carry)
    assert [len(t) for t in parts] == [300, 300, 100]
    pd.testing.assert_frame_equal(whole, pd.concat(parts, ignore_index=True), check_exact=True)
    assert not whole["short_history"].any()  # no windows in ULB: no row lacks past


def test_handbook_table_passes_gate_and_prepares(stage_root, capsys):
    data_file = stage_root / "transactions.csv"
    handbook_frame(n=4000).to_csv(data_file, index=False)
    params = small_fraud_params()
    params["data"] = {"source": "handbook", "path": str(data_file)}
    params["prepare"].update(train_length=10, val_length=3, gap_length=2, test_length=5)
    write_params(stage_root, "fraud", params)
    for stage in ("acquire", "validate", "prepare"):
        assert main(["stage", stage, "fraud"]) == 0, capsys.readouterr().err
    summary = json.loads((stage_root / "data/fraud/prepare/features.json").read_text())["splits"]
    assert summary["train"]["rows"] > 0 and summary["test"]["rows"] > 0
