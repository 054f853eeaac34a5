"""A user's own data in MovieLens format runs through every stage, in-process, to a report with titles."""

import json

import pandas as pd

from aiflow.cli import main
from domains.common.paths import STAGES
from tests.conftest import write_params
from tests.recsys.conftest import small_recsys_params
from tests.recsys.test_bad_inputs import ratings_frame, write_ratings


def test_movielens_100k_files_run_to_a_report(recsys_root, capsys):
    folder = recsys_root / "ml-100k"
    folder.mkdir()
    frame = ratings_frame()
    write_ratings(folder / "u.data", frame)
    (folder / "u.item").write_bytes("".join(f"{i}|Film n\xb0{i} (1997)|01-Jan-1997||http://x|0\n"
                                            for i in sorted(frame["item_id"].unique())).encode("latin-1"))
    params = small_recsys_params()
    params["data"] = {"source": "ml-100k", "path": str(folder)}
    params["train"]["surprise_models"] = ["baseline_only", "svd"]  # the others are covered by the synthetic run
    write_params(recsys_root, "recsys", params)
    for stage in STAGES:
        assert main(["stage", stage, "recsys"]) == 0, capsys.readouterr().err
    data = recsys_root / "data" / "recsys"
    metrics = json.loads((data / "evaluate/metrics.json").read_text())
    assert set(metrics) == {"baseline_only", "svd", "mf", "ease", "item_knn", "bpr", "vae", "popularity"}
    assert not (data / "prepare/noise_floor.json").exists()  # no known floor for real data
    examples = pd.read_csv(data / "evaluate/tables/top10_examples.csv")
    assert examples["title"].str.startswith("Film n\xb0").all()
    assert "Film n\xb0" in (data / "report/report.html").read_text()
