"""Score new transactions with a trained fraud model.

The window features need each card's and terminal's past. It comes from the batch itself (its
earlier rows) and, when given, a history file of earlier labelled transactions in the same format
(`aiflow score fraud new.csv --history last_month.csv`); the training data is never re-read. The
history is read `score.chunk_rows` rows at a time and only the rows the windows can reach from the
batch's earliest row are kept (the longest window plus the label delay), so a long history costs time
to read, not memory.
Rows whose available past is shorter than the longest window are marked `short_history`: their
counts and averages cover less time than the model learned from. Terminal risk uses labels only
once known (after `delay_days`); batch rows without a label count as not (yet) fraud.

In chunks (`--chunk-rows`), each chunk hands the next the rows its windows can still reach (the
history's and the batch's, back to the longest window plus the label delay before the latest
time) and the counts its notes and shadow metrics add up: predictions and `short_history` are the
bits the whole batch gives. That needs the input in time order: a chunk that starts before the
latest transaction already scored (or a card's transactions at one instant split by a chunk
boundary) stops the run in one line. The shadow evaluation keeps each row's label and score.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch

from domains.common.chunks import rows_label
from domains.common.contract import Reference, Scored, ScoreOptions
from domains.common.errors import DataError
from domains.common.modelstore import cached_load
from domains.common.trainer import ROWS_ALIGNED, predict
from domains.fraud.features import NS_PER_DAY, build_features
from domains.fraud.loaders import iter_handbook, iter_ulb, read_handbook, read_ulb
from domains.fraud.params import FraudParams
from domains.fraud.train import MODELS, load_mlp, load_split, score_all


def read_batch(p: FraudParams, path: Path, source: str) -> pd.DataFrame:
    """New transactions in a training format; the label (TX_FRAUD / Class) is optional."""
    return {"handbook": read_handbook, "ulb": read_ulb}[source](path, labels=False)


def read_chunks(p: FraudParams, path: Path, source: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """read_batch in pieces of at most `chunk_rows` rows, in file order."""
    return {"handbook": iter_handbook, "ulb": iter_ulb}[source](path, chunk_rows, labels=False)


def reference(p: FraudParams, prepared_dir: Path, train_dir: Path) -> Reference:
    frame, names = load_split(prepared_dir)
    test = frame[frame["split"] == "test"]
    return Reference(
        frame[frame["split"] == "train"][names].reset_index(drop=True),
        score_all(train_dir, test[names].to_numpy(np.float32)),
    )


@dataclass(frozen=True)
class _Carry:
    """What a chunk hands the next (ScoreOptions.carry)."""

    past: pd.DataFrame  # history and batch rows the next chunk's windows can reach, in time order
    start: int  # ns: where the batch's past begins (its first chunk's earliest row, or its history's)
    latest: int  # ns: the latest transaction scored so far
    tied: np.ndarray  # the cards of the scored rows timed `latest`
    history_rows: int  # rows of the --history file
    rows: int  # rows scored so far
    short: int  # of which short_history
    labels: np.ndarray | None  # the shadow evaluation's labels and scores so far
    probabilities: np.ndarray | None


WINDOW_COLUMNS = ["tx_datetime", "customer_id", "terminal_id", "tx_amount", "tx_fraud"]  # what the windows read


def score_batch(p: FraudParams, model_dir: Path, model: str, table: pd.DataFrame, options: ScoreOptions) -> Scored:
    q = p.prepare
    needed = max(
        [
            0,
            *(q.customer_windows_days if "customer_id" in table else []),
            *((w + q.delay_days for w in q.terminal_windows_days) if "terminal_id" in table else []),
        ]
    )  # days of past the windows look back on
    carry: _Carry | None = options.carry
    if carry is None:
        # of the history, only what the windows reach from the batch's earliest row: memory does not grow with it
        since = int(table["tx_datetime"].min().value) - needed * NS_PER_DAY
        given = (
            [options.history_rows]
            if options.history_rows is not None
            else read_history(options.history, p.score.chunk_rows)
        )
        history, history_rows, history_start = _reachable(given, since)
    else:
        if needed:
            _check_order(table, carry)
        history = carry.past
    labelled = "tx_fraud" in table
    batch = table.assign(tx_fraud=table["tx_fraud"] if labelled else 0, _batch=True, _order=np.arange(len(table)))
    both = pd.concat([history.assign(_batch=False, _order=-1), batch], ignore_index=True) if len(history) else batch
    both = both.sort_values(["tx_datetime", "_batch", "_order"], kind="stable").reset_index(drop=True)
    features = build_features(both, q.customer_windows_days, q.terminal_windows_days, q.delay_days)
    names = cached_load(model_dir / "mlp.pt", lambda f: torch.load(f, map_location="cpu", weights_only=True))[
        "features"
    ]
    missing = [n for n in names if n not in features]
    if missing:
        raise DataError(
            f"fraud: the batch lacks what the model's features need ({', '.join(missing[:4])}); "
            "score it in the format the model was trained on (--source)"
        )
    rows = both["_batch"].to_numpy()
    order = np.argsort(both.loc[rows, "_order"].to_numpy())  # back to input order
    x = features.loc[rows, names].to_numpy(np.float32)[order]
    probability = options.predict(model, x) if options.predict is not None else _predict(model_dir, model, x)

    t = both.loc[rows, "tx_datetime"].to_numpy(dtype="datetime64[ns]").view(np.int64)[order]
    start = (
        carry.start
        if carry is not None
        else options.past_from
        if options.past_from is not None
        else min(int(t.min()), history_start)
    )
    known_days = (t - start) / NS_PER_DAY
    threshold = p.evaluate.decision_threshold
    predictions = pd.DataFrame(
        {
            "transaction_id": table["transaction_id"].to_numpy(),
            "fraud_probability": probability,
            "decision": (probability >= threshold).astype(np.int64),
            "short_history": (known_days < needed) & (needed > 0),  # no windows (ULB): never short, in any order
        },
        index=table.index,
    )
    history_rows = carry.history_rows if carry is not None else history_rows
    scored_rows = len(predictions) + (carry.rows if carry is not None else 0)
    short = int(predictions["short_history"].sum()) + (carry.short if carry is not None else 0)
    notes = [
        f"decision: fraud_probability >= {threshold} (fraud.evaluate.decision_threshold)",
        f"history: {history_rows} earlier transaction(s)"
        if history_rows
        else "history: the batch's own earlier rows only (pass --history for the windows' past)",
        f"{short} of {scored_rows} rows have less than {needed} days of past (short_history)",
    ]
    labels = _joined(carry.labels if carry else None, table["tx_fraud"].to_numpy(np.int8) if labelled else None)
    probabilities = _joined(carry.probabilities if carry else None, probability if labelled else None)
    shadow = _shadow(labels, probabilities) if labels is not None and probabilities is not None else None
    drift_frame = pd.DataFrame(x, columns=names)
    after = None
    if options.chunked:
        latest = max(int(t.max()), carry.latest if carry is not None else int(t.max()))
        at_latest = (both["_batch"] & (both["tx_datetime"] == pd.Timestamp(latest))).to_numpy()
        tied = both.loc[at_latest, "customer_id"].to_numpy() if "customer_id" in both else np.empty(0)
        if carry is not None and carry.latest == latest:
            tied = np.concatenate([carry.tied, tied])
        reach = both["tx_datetime"].to_numpy(dtype="datetime64[ns]").view(np.int64) >= latest - needed * NS_PER_DAY
        past = both.loc[reach, [c for c in WINDOW_COLUMNS if c in both]] if needed else pd.DataFrame()
        after = _Carry(past, int(np.min(start)), latest, tied, history_rows, scored_rows, short, labels, probabilities)
    return Scored(predictions, drift_frame, probability, shadow, notes, after)


def _check_order(table: pd.DataFrame, carry: _Carry) -> None:
    """Chunks see only earlier rows: a chunk reaching back before the latest time already scored would miss them."""
    times = table["tx_datetime"]
    first = int(times.min().value)
    split_card = (
        first == carry.latest
        and "customer_id" in table
        and bool(np.isin(table.loc[times == pd.Timestamp(first), "customer_id"], carry.tied).any())
    )
    if first < carry.latest or split_card:
        why = (
            f"go back to {pd.Timestamp(first)}, before {pd.Timestamp(carry.latest)} already scored in earlier rows"
            if first < carry.latest
            else f"hold a card's transaction at {pd.Timestamp(first)}, as do earlier rows (one instant split)"
        )
        raise DataError(
            f"fraud: {rows_label(table.index)} of the batch {why}: scoring in chunks needs the input in time order; "
            "sort it by TX_DATETIME or score it whole (--chunk-rows 0)"
        )


def _joined(before: np.ndarray | None, now: np.ndarray | None) -> np.ndarray | None:
    return now if before is None or now is None else np.concatenate([before, now])


def read_history(path: Path | None, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A --history file in pieces of at most `chunk_rows` rows (0: a piece per file), checked: the windows need
    a time, an amount and a known label (terminal risk) on every row."""
    if path is None:
        return
    for history in iter_handbook(path, chunk_rows):
        bad = history["tx_datetime"].isna() | ~pd.to_numeric(history["tx_amount"], errors="coerce").notna()
        if bad.any() or not history["tx_fraud"].isin([0, 1]).all():
            raise DataError(f"{path}: history has rows without a valid time, amount or 0/1 label; gate it first")
        yield history.astype({"tx_fraud": "int64", "tx_amount": "float64"})


def _reachable(pieces: Iterable[pd.DataFrame], since: int) -> tuple[pd.DataFrame, int, int]:
    """The rows of `pieces` timed `since` (ns) or later, with the window columns only; how many rows there were
    and the earliest time (ns; a large number when none), which set where the batch's past begins."""
    kept, rows, earliest = [], 0, np.iinfo(np.int64).max
    for piece in pieces:
        if not len(piece):
            continue
        t = piece["tx_datetime"].to_numpy(dtype="datetime64[ns]").view(np.int64)
        rows, earliest = rows + len(piece), min(earliest, int(t.min()))
        kept.append(piece.loc[t >= since, [c for c in WINDOW_COLUMNS if c in piece]])
    return (pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()), rows, earliest


def _predict(model_dir: Path, model: str, x: np.ndarray) -> np.ndarray:
    if model not in MODELS:
        raise DataError(f"fraud: unknown model '{model}'; trained: {', '.join(MODELS)}")
    if model == "mlp":
        mlp = cached_load(model_dir / "mlp.pt", load_mlp)
        return predict(mlp, torch.from_numpy(x), pad_to=ROWS_ALIGNED, then=torch.sigmoid)
    return cached_load(model_dir / f"{model}.joblib", joblib.load).predict_proba(x)[
        :, 1
    ]  # verified against its DVC hash first


def _shadow(y: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(y)) < 2:
        return {"fraud_rate": float(y.mean())}
    return {
        "average_precision": float(average_precision_score(y, probability)),
        "auroc": float(roc_auc_score(y, probability)),
        "fraud_rate": float(y.mean()),
    }
