"""The same inputs give byte-identical stage outputs: acquire, validate and prepare of every domain, run
twice in two project roots. Timings live outside the outputs (paths.stage_record), where DVC never hashes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domains.common import paths
from domains.common.stages import run_stage
from tests.conftest import digest, project_root, small_fraud_params
from tests.defects.conftest import small_defects_params
from tests.medical.conftest import small_medical_params
from tests.recsys.conftest import small_recsys_params
from tests.sentiment.conftest import small_sentiment_params

SMALL = {"fraud": small_fraud_params, "recsys": small_recsys_params, "sentiment": small_sentiment_params,
         "medical": small_medical_params, "defects": small_defects_params}
DATA_STAGES = ("acquire", "validate", "prepare")


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("domain", sorted(SMALL))
def test_data_stages_give_identical_bytes_twice(domain, tmp_path, monkeypatch):
    runs = []
    for i in range(2):
        (tmp_path / f"run{i}").mkdir()
        root = project_root(tmp_path / f"run{i}", monkeypatch, domain, SMALL[domain]())
        for stage in DATA_STAGES:
            run_stage(stage, domain, root)
        runs.append({stage: _files(paths.stage_dir(root, domain, stage)) for stage in DATA_STAGES})
        record = json.loads(paths.stage_record(root, domain, "prepare").read_text())
        assert record["stage"] == "prepare" and record["seconds"] >= 0  # the timing is kept, beside the outputs
    for stage in DATA_STAGES:
        first, second = runs[0][stage], runs[1][stage]
        assert first and first.keys() == second.keys(), stage
        assert [f for f in first if first[f] != second[f]] == [], f"{domain} {stage}: files differ between two runs"
