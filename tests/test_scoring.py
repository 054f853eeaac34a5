"""`aiflow score` end to end on fraud in a throwaway repo: the champion by its DVC hash, the gate and the
drift gate on new transactions, provenance on every row, byte-identical rescoring, bad inputs, a model
altered in the cache, and a second clone that fetches the champion from a DVC remote."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import (
    GIT,
    aiflow_in_process,
    copy_repo_with,
    digest,
    fraud_batches,
    promoted_copy,
    run,
    small_fraud_params,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return promoted_copy(tmp_path_factory, "fraud", small_fraud_params())


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> dict[str, Path]:
    return fraud_batches(tmp_path_factory.mktemp("batches"))


@pytest.fixture
def score(monkeypatch, capsys):
    """`aiflow score fraud <args>` on a repository, in this process."""

    def call(repo: Path, *args, check: bool = True):
        return aiflow_in_process(repo, monkeypatch, capsys, "score", "fraud", *args, check=check)

    return call


def assert_refused(proc, *expected: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert lines[0].startswith("error:") and "Traceback" not in proc.stderr, proc.stderr
    for part in expected:
        assert part in proc.stderr, (part, proc.stderr)


def test_scores_new_transactions_with_the_champion(repo, batches, tmp_path):
    out = tmp_path / "scored"
    # The command line itself, as a user runs it; the other tests call the same entry point in-process.
    proc = run(
        ["aiflow", "score", "fraud", str(batches["new"]), "--history", str(batches["history"]), "--out", str(out)], repo
    )
    assert "scored" in proc.stdout and "with v1 (mlp)" in proc.stdout
    predictions = pd.read_parquet(out / "predictions.parquet")
    new = pd.read_csv(batches["new"])
    assert len(predictions) == len(new)
    assert predictions["transaction_id"].tolist() == new["TRANSACTION_ID"].tolist()  # input order
    assert predictions["fraud_probability"].between(0, 1).all()
    assert set(predictions["decision"]) <= {0, 1}
    champion = json.loads((repo / "registry" / "fraud.json").read_text())["champion"]
    assert (predictions["model_version"] == "v1").all() and (predictions["model_md5"] == champion["train_md5"]).all()
    assert predictions["input_sha256"].nunique() == 1 and len(predictions["input_sha256"][0]) == 64
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["gate"]["verdict"] in {"pass", "warn"} and manifest["drift"]["verdict"] in {"pass", "warn"}
    assert manifest["shadow_metrics"] is None  # no labels: nothing pretends otherwise
    assert len(manifest["git_commit"]) >= 40
    html = (out / "report.html").read_text()
    assert "Drift" in html and "data:image/png;base64," in html and "no labels" in html


def test_labelled_batch_gets_a_shadow_evaluation(repo, batches, tmp_path, score):
    score(repo, batches["labelled"], "--history", batches["history"], "--out", tmp_path / "s")
    shadow = json.loads((tmp_path / "s" / "manifest.json").read_text())["shadow_metrics"]
    assert 0.5 < shadow["auroc"] <= 1 and 0 < shadow["average_precision"] <= 1


def test_scoring_twice_gives_identical_bytes(repo, batches, tmp_path, score):
    for name in ("a", "b"):
        score(repo, batches["new"], "--history", batches["history"], "--out", tmp_path / name)
    assert digest(tmp_path / "a" / "predictions.parquet") == digest(tmp_path / "b" / "predictions.parquet")


def test_without_history_rows_are_marked_short(repo, batches, tmp_path, score):
    proc = score(repo, batches["new"], "--out", tmp_path / "s", "--csv", check=False)
    if proc.returncode == 0:  # warm-up days missing from the windows: marked, or blocked as drift
        predictions = pd.read_csv(tmp_path / "s" / "predictions.csv")
        assert predictions["short_history"].any()
    else:
        assert_refused(proc, "drift blocked", "no scores written")
        assert not (tmp_path / "s").exists()


def test_quarantined_rows_are_in_the_output_without_a_score(repo, batches, tmp_path, score):
    new = pd.read_csv(batches["new"])
    new.loc[new.index[:2], "TX_AMOUNT"] = 0.0  # $0 authorisations: quarantined by the training gate's rule
    file = tmp_path / "zero.csv"
    new.to_csv(file, index=False)
    score(repo, file, "--history", batches["history"], "--out", tmp_path / "s")
    predictions = pd.read_parquet(tmp_path / "s" / "predictions.parquet")
    held = predictions[predictions["quarantine_reason"].notna()]
    assert len(held) == 2 and held["fraud_probability"].isna().all()
    assert held["quarantine_reason"].str.contains("tx_amount:nonzero").all()


def test_a_drifted_batch_is_blocked_and_writes_nothing(repo, batches, tmp_path, score):
    new = pd.read_csv(batches["new"])
    new["TX_AMOUNT"] = new["TX_AMOUNT"] * 3 + 100
    file = tmp_path / "drifted.csv"
    new.to_csv(file, index=False)
    before = digest(file)
    proc = score(repo, file, "--history", batches["history"], "--out", tmp_path / "s", check=False)
    assert_refused(proc, "drift blocked", "tx_amount", "no scores written")
    assert not (tmp_path / "s").exists() and digest(file) == before


def test_chunks_give_the_whole_batchs_bytes(repo, batches, tmp_path, score):
    """Chunks of 1,500 rows (each handed the past its windows reach) against the batch at once: the same predictions,
    byte for byte, short_history marks included, and the same counts, drift and shadow metrics."""
    month = pd.concat([pd.read_csv(batches["history"]), pd.read_csv(batches["labelled"])])
    early = pd.to_datetime(month["TX_DATETIME"]) < pd.to_datetime(month["TX_DATETIME"]).min() + pd.Timedelta(days=8)
    past, whole = tmp_path / "past.csv", tmp_path / "batch.csv"
    month[early].to_csv(past, index=False)  # 8 days: the batch's first 2 days have less past than the windows
    month[~early].to_csv(whole, index=False)
    manifests = {}
    for rows in (0, 1500):
        score(repo, whole, "--history", past, "--chunk-rows", rows, "--out", tmp_path / str(rows))
        manifests[rows] = json.loads((tmp_path / str(rows) / "manifest.json").read_text())
    assert digest(tmp_path / "0" / "predictions.parquet") == digest(tmp_path / "1500" / "predictions.parquet")
    predictions = pd.read_parquet(tmp_path / "1500" / "predictions.parquet")
    assert predictions["short_history"].any() and not predictions["short_history"].all()
    one, chunked = manifests[0], manifests[1500]
    assert one["counts"]["chunks"] == 1 and chunked["counts"]["chunks"] == -(-int((~early).sum()) // 1500)
    assert {k: v for k, v in one["counts"].items() if k != "chunks"} == {
        k: v for k, v in chunked["counts"].items() if k != "chunks"
    }
    assert one["notes"] == chunked["notes"] and one["shadow_metrics"] == chunked["shadow_metrics"]
    assert [(c["psi"], c["ks_pvalue"]) for c in one["drift"]["checks"]] == [
        (c["psi"], c["ks_pvalue"]) for c in chunked["drift"]["checks"]
    ]


def test_history_is_read_in_pieces_keeping_only_what_the_windows_reach(repo, batches, tmp_path):
    """--history read score.chunk_rows rows at a time: the predictions and notes of a history read whole. A history
    ten times as long (nine earlier copies, all beyond the windows' reach from the batch's first row) gives the
    same predictions and takes no more memory, where read whole it takes several times as much."""
    import tracemalloc

    from domains.common.contract import ScoreOptions
    from domains.common.registry import load_params
    from domains.fraud.params import FraudParams
    from domains.fraud.score import read_batch, score_batch

    model_dir = repo / "data" / "fraud" / "train"
    trained = json.loads((model_dir / "trained_params.json").read_text())
    base = FraudParams.model_validate({**load_params(repo, "fraud").model_dump(mode="json"), **trained})
    history = pd.read_csv(batches["history"])
    times = pd.to_datetime(history["TX_DATETIME"])
    span = (times.max() - times.min()).ceil("D")  # 20 days; the windows reach 10 days back from the batch
    earlier = [history.assign(TX_DATETIME=(times - k * span).astype(str)) for k in range(9, 0, -1)]
    long = tmp_path / "long_history.csv"
    pd.concat([*earlier, history]).to_csv(long, index=False)
    table = read_batch(base, batches["new"], "handbook")

    def scored(path: Path, chunk_rows: int) -> tuple[pd.DataFrame, list[str], int]:
        p = base.model_copy(update={"score": base.score.model_copy(update={"chunk_rows": chunk_rows})})
        tracemalloc.start()
        try:
            result = score_batch(p, model_dir, "mlp", table, ScoreOptions(history=path))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return result.predictions, result.notes, peak

    scored(batches["history"], 0)  # the model loads (and is cached) once, outside what is measured
    whole, whole_notes, _ = scored(batches["history"], 0)
    pieces, pieces_notes, short_peak = scored(batches["history"], 1000)
    pd.testing.assert_frame_equal(whole, pieces, check_exact=True)
    assert whole_notes == pieces_notes
    longer, notes, long_peak = scored(long, 1000)
    pd.testing.assert_frame_equal(whole, longer, check_exact=True)
    assert f"history: {10 * len(history)} earlier transaction(s)" in notes
    _, _, read_whole_peak = scored(long, 0)
    # measured: 3.7 MB, 3.7 MB, 11.2 MB read whole
    assert long_peak < 1.3 * short_peak and read_whole_peak > 2 * long_peak, (short_peak, long_peak, read_whole_peak)


def test_chunks_out_of_time_order_are_refused_in_one_line(repo, batches, tmp_path, score):
    new = pd.read_csv(batches["new"])
    file = tmp_path / "shuffled.csv"
    pd.concat([new.iloc[1000:], new.iloc[:1000]]).to_csv(file, index=False)  # a later week first
    proc = score(
        repo, file, "--history", batches["history"], "--chunk-rows", 1000, "--out", tmp_path / "s", check=False
    )
    assert_refused(proc, "time order", "--chunk-rows 0")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()


@pytest.mark.parametrize("case", ["bad_row", "id_of_an_earlier_chunk"])
def test_a_chunk_that_blocks_writes_nothing(repo, batches, tmp_path, case, score):
    new = pd.read_csv(batches["new"])
    if case == "bad_row":
        new.loc[2500, "TX_AMOUNT"] = -5.0  # blocks (tx_amount:non_negative), in the third chunk
    else:
        new.loc[2500, "TRANSACTION_ID"] = new.loc[10, "TRANSACTION_ID"]  # unique within each chunk, not across
    file = tmp_path / "batch.csv"
    new.to_csv(file, index=False)
    proc = score(
        repo, file, "--history", batches["history"], "--chunk-rows", 1000, "--out", tmp_path / "s", check=False
    )
    expected = "tx_amount:non_negative" if case == "bad_row" else "repeat an id of earlier rows"
    assert_refused(proc, "gate blocked", "(rows 2001-3000)", expected, "no scores written")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "case", ["missing_column", "empty", "ratings_file", "unknown_source", "out_is_input", "unknown_version"]
)
def test_bad_input_stops_with_one_line(repo, batches, tmp_path, case, score):
    new = pd.read_csv(batches["new"])
    file, extra, expected = tmp_path / "batch.csv", [], ""
    if case == "missing_column":
        new.drop(columns=["TX_AMOUNT"]).to_csv(file, index=False)
        expected = "missing required column(s): TX_AMOUNT"
    elif case == "empty":
        new.head(0).to_csv(file, index=False)
        expected = "no rows"
    elif case == "ratings_file":  # another domain's format
        file.write_text("user_id,item_id,rating,timestamp\n1,2,4,881250949\n")
        expected = "missing required column(s)"
    elif case == "unknown_source":
        new.to_csv(file, index=False)
        extra, expected = ["--source", "kaggle"], "unknown source 'kaggle'"
    elif case == "out_is_input":
        new.to_csv(file, index=False)
        extra, expected = ["--out", str(file)], "would overwrite"
    else:
        new.to_csv(file, index=False)
        extra, expected = ["--model", "v7"], "no model v7"
    before = digest(file)
    proc = score(repo, file, *extra, check=False)
    assert_refused(proc, expected)
    assert digest(file) == before
    assert not (repo / "data" / "fraud" / "scores" / "batch").exists()


def test_a_model_altered_in_the_cache_is_refused_before_loading(repo, batches, tmp_path, score):
    champion = json.loads((repo / "registry" / "fraud.json").read_text())["champion"]
    listing = json.loads(_cached(repo, champion["train_md5"]).read_text())
    entry = next(e for e in listing if e["relpath"] == "hgb.joblib")
    cached = _cached(repo, entry["md5"])
    original = cached.read_bytes()
    os.chmod(cached, stat.S_IWUSR | stat.S_IRUSR)
    try:
        cached.write_bytes(original[: len(original) // 2])  # truncated
        proc = score(repo, batches["new"], "--history", batches["history"], "--out", tmp_path / "s", check=False)
        assert_refused(proc, "hgb.joblib does not match its recorded hash", "refusing to load")
        assert not (tmp_path / "s").exists()
    finally:
        cached.write_bytes(original)


def test_a_champion_missing_from_cache_and_remote_is_refused(repo, batches, tmp_path, score):
    registry_file = repo / "registry" / "fraud.json"
    original = registry_file.read_text()
    registry = json.loads(original)
    registry["champion"]["train_md5"] = "0" * 32 + ".dir"
    registry_file.write_text(json.dumps(registry))
    try:
        proc = score(repo, batches["new"], "--out", tmp_path / "s", check=False)
    finally:
        registry_file.write_text(original)
    assert_refused(proc, "is neither in the DVC cache nor on the remote")
    assert not (tmp_path / "s").exists()


def test_no_champion_says_how_to_get_one(tmp_path, batches, score):
    root = copy_repo_with(tmp_path / "fresh", "fraud", small_fraud_params())
    proc = score(root, batches["new"], check=False)
    assert_refused(proc, "no champion yet", "aiflow champion promote fraud")


def test_second_clone_fetches_the_champion_from_the_remote(repo, batches, tmp_path, score):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-f", "-d", "local", str(remote)], repo)
    run(["dvc", "push", "train@fraud"], repo)
    run([*GIT, "add", "-A", "registry", "dvc.lock", ".dvc/config"], repo)
    run([*GIT, "commit", "-qm", "champion v1"], repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    proc = score(clone, batches["new"], "--history", batches["history"], "--out", tmp_path / "s")
    assert "with v1 (mlp)" in proc.stdout
    first = tmp_path / "first"
    score(repo, batches["new"], "--history", batches["history"], "--out", first)
    assert digest(tmp_path / "s" / "predictions.parquet") == digest(first / "predictions.parquet")

    # A model altered on the remote is refused too, whatever the remote says.
    shutil.rmtree(clone / ".dvc" / "cache")
    champion = json.loads((repo / "registry" / "fraud.json").read_text())["champion"]
    listing = json.loads(_cached(repo, champion["train_md5"]).read_text())
    stored = _cached_in(remote, next(e for e in listing if e["relpath"] == "mlp.pt")["md5"])
    os.chmod(stored, stat.S_IWUSR | stat.S_IRUSR)
    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    proc = score(clone, batches["new"], "--history", batches["history"], "--out", tmp_path / "t", check=False)
    assert_refused(proc, "mlp.pt")
    assert not (tmp_path / "t").exists()


def _cached(root: Path, md5: str) -> Path:
    return _cached_in(root / ".dvc" / "cache", md5)


def _cached_in(store: Path, md5: str) -> Path:
    return store / "files" / "md5" / md5[:2] / md5[2:]
