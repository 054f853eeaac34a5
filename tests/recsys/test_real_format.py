"""A user's own data in MovieLens format runs through every stage, in-process, to a report with titles; a long-tail
catalogue promotes a model with the default gate and evaluate params."""

import json

import pandas as pd
import yaml

from aiflow.cli import main
from domains.common.paths import STAGES
from domains.recsys.params import SyntheticParams
from domains.recsys.synthetic import generate_ratings
from tests.conftest import ROOT, write_params
from tests.recsys.conftest import small_recsys_params
from tests.recsys.test_bad_inputs import ratings_frame, write_ratings


def test_movielens_100k_files_run_to_a_report(recsys_root, capsys):
    folder = recsys_root / "ml-100k"
    folder.mkdir()
    frame = ratings_frame()
    write_ratings(folder / "u.data", frame)
    (folder / "u.item").write_bytes(
        "".join(
            f"{i}|Film n\xb0{i} (1997)|01-Jan-1997||http://x|0\n" for i in sorted(frame["item_id"].unique())
        ).encode("latin-1")
    )
    users = sorted(frame["user_id"].unique())  # u.user: id|age|gender|occupation|zip, for the protected slices
    (folder / "u.user").write_text("".join(f"{u}|{20 + 7 * (u % 6)}|{'MF'[u % 2]}|other|00000\n" for u in users))
    params = small_recsys_params()
    params["data"] = {"source": "ml-100k", "path": str(folder)}
    params["train"]["surprise_models"] = ["baseline_only", "svd"]  # the others are covered by the synthetic run
    params["evaluate"]["slices"] = {
        "age": {"column": "age", "bins": [30, 45], "protected": True},
        "gender": {"column": "gender", "protected": True},
    }
    params["evaluate"]["min_slice_size"] = 5
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
    slices = pd.read_csv(data / "evaluate/tables/slices.csv")
    assert set(slices.loc[slices["slice"] == "gender", "group"]) == {"F", "M"}
    assert set(slices.loc[slices["slice"] == "age", "group"]) == {"< 30", "30-45", ">= 45"}
    gaps = json.loads((data / "evaluate/decision.json").read_text())["slices"]["protected_gaps"]
    assert {g["slice"] for g in gaps} == {"age", "gender"}
    assert "Protected attribute gender: best group" in (data / "report/report.html").read_text()


def test_a_long_tail_catalogue_promotes_with_default_gate_and_evaluate_params(recsys_root, capsys):
    """Many items rated once or twice, as in every real MovieLens release: reported, not blocking; the candidate
    ranking model beats popularity and is promoted on NDCG@10."""
    frame = generate_ratings(
        SyntheticParams(
            n_users=200,
            n_items=600,
            n_ratings=8000,
            min_item_ratings=1,
            popularity_exponent=1.1,
            selection_strength=2.0,
        ),
        seed=4,
    ).ratings
    data_file = write_ratings(recsys_root / "u.data", frame)
    defaults = yaml.safe_load((ROOT / "params.yaml").read_text())["recsys"]
    params = small_recsys_params()
    params.update(
        data={"source": "ml-100k", "path": str(data_file)}, gate=defaults["gate"], evaluate=defaults["evaluate"]
    )
    params["train"].update(
        surprise_models=["baseline_only"], ranking_models=["ease"]
    )  # speed: only the candidate decides
    write_params(recsys_root, "recsys", params)
    for stage in STAGES[:-1]:
        assert main(["stage", stage, "recsys"]) == 0, capsys.readouterr().err
    data = recsys_root / "data" / "recsys"
    gate = json.loads((data / "validate/gate.json").read_text())
    rare = next(c for c in gate["checks"] if c["name"] == "item_id:enough_ratings")
    assert gate["verdict"] == "pass" and rare["severity"] == "info" and not rare["passed"]
    assert json.loads((data / "prepare/profile.json").read_text())["items_below_3_ratings_share"] > 0.1
    decision = json.loads((data / "evaluate/decision.json").read_text())
    assert (decision["candidate"], decision["primary_metric"], decision["decision"]) == (
        "ease",
        "ndcg_at_10",
        "promote",
    ), decision


def test_user_attributes_are_read_from_either_release(tmp_path):
    from domains.recsys.loaders import read_users

    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    for source, expected in (("ml-100k", [(1, 24, "M"), (2, 53, "F")]), ("ml-1m", [(1, 1, "F"), (2, 56, "M")])):
        users = read_users(source, tmp_path)
        assert list(users.itertuples(index=False, name=None)) == expected
    assert (
        read_users("ml-latest-small", tmp_path) is None and read_users("ml-100k", tmp_path / "empty" / "u.data") is None
    )
