"""Fraud requests for the HTTP endpoint: transaction rows in, the batch scorer's columns out.

A request is `{"items": [transaction, ...], "history": [labelled transaction, ...]}` in the canonical
columns the loaders produce (handbook: transaction_id, tx_datetime, customer_id, terminal_id, tx_amount;
ULB-trained models: time, amount, v1..v28). It goes through the handbook reader's own conversion
(`handbook_to_canonical`), so a request and a file row are one table.

The window features need each card's and terminal's past, as in batch scoring: it is the request's
own earlier rows, its optional `history` (labelled, like `--history`) and the server's `--history`
file, read once at start-up, of which only the rows of the request's cards and terminals are used
(the windows group by card and by terminal, so no other row can change their values). Rows with less
past than the longest window plus the label delay are marked `short_history`, as in batch scoring.
Requests scored together are kept apart: each one's cards and terminals are renumbered into a range
of their own, so no request's rows count in another's windows.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from domains.common.contract import ScoreOptions
from domains.fraud.loaders import V_COLUMNS, _seconds_to_datetime, handbook_to_canonical
from domains.fraud.params import FraudParams

MAX_ITEMS = 1000  # transactions per request
MAX_HISTORY = 10_000  # history rows per request
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Transaction(BaseModel):
    """One card transaction (the handbook table's columns, lower-case)."""

    model_config = STRICT
    transaction_id: int
    tx_datetime: datetime = Field(description="ISO 8601; a time zone is converted to UTC")
    customer_id: int
    terminal_id: int
    tx_amount: float


class PastTransaction(Transaction):
    """An earlier transaction whose label is known."""

    tx_fraud: Literal[0, 1]


_ULB_FIELDS: dict[str, Any] = {
    "transaction_id": (int, ...),
    "time": (float, ...),
    "amount": (float, ...),
    **{v.lower(): (float, ...) for v in V_COLUMNS},
}
UlbTransaction = create_model("UlbTransaction", __config__=STRICT, **_ULB_FIELDS)  # ULB's columns, lower-case


def request_model(p: FraudParams) -> type[BaseModel]:
    if p.data.source == "ulb":
        return create_model(
            "FraudUlbRequest",
            __config__=STRICT,
            items=(list[UlbTransaction], Field(min_length=1, max_length=MAX_ITEMS)),
        )  # type: ignore[valid-type]
    return create_model(
        "FraudRequest",
        __config__=STRICT,
        items=(list[Transaction], Field(min_length=1, max_length=MAX_ITEMS)),
        history=(list[PastTransaction], Field(default_factory=list, max_length=MAX_HISTORY)),
    )


def to_table(p: FraudParams, body: Any, scratch: Path) -> pd.DataFrame:
    """The table `read_batch` gives a file of these rows."""
    if p.data.source == "ulb":
        rows = pd.DataFrame([item.model_dump() for item in body.items])
        out = pd.DataFrame(
            {
                "transaction_id": rows["transaction_id"],
                "tx_datetime": _seconds_to_datetime(rows["time"]),
                "tx_amount": rows["amount"],
            }
        )
        return out.join(rows[[v.lower() for v in V_COLUMNS]])
    return handbook_to_canonical(_handbook(body.items), "request", labels=False)


def to_tables(p: FraudParams, bodies: list[Any], scratch: Path) -> pd.DataFrame:
    """to_table for several requests in one conversion (its fixed cost would otherwise be paid per request)."""
    if p.data.source == "ulb":
        return pd.concat([to_table(p, body, scratch) for body in bodies], ignore_index=True)
    return handbook_to_canonical(_handbook([item for body in bodies for item in body.items]), "request", labels=False)


def _handbook(items: list[Any]) -> pd.DataFrame:
    frame = pd.DataFrame([item.model_dump() for item in items])
    frame["tx_datetime"] = [_naive_utc(item.tx_datetime) for item in items]
    return frame.rename(columns=str.upper)


def _naive_utc(t: datetime) -> str:
    return (pd.Timestamp(t).tz_convert("UTC").tz_localize(None) if t.tzinfo else pd.Timestamp(t)).isoformat()


class History:
    """The server's `--history` file, indexed by card and terminal so each request takes only its own past."""

    def __init__(self, path: Path):
        from domains.fraud.score import read_history  # torch comes with it: only when a server loads history

        self.rows = pd.concat(read_history(path, 0), ignore_index=True)  # whole: requests come from any time
        self.start = int(self.rows["tx_datetime"].min().value)
        self.by_customer = self.rows.groupby("customer_id").indices
        self.by_terminal = self.rows.groupby("terminal_id").indices

    def relevant(self, table: pd.DataFrame) -> pd.DataFrame:
        parts = [self.by_customer.get(c) for c in pd.unique(table["customer_id"])]
        parts += [self.by_terminal.get(t) for t in pd.unique(table["terminal_id"])]
        found = [p for p in parts if p is not None]
        return self.rows.iloc[np.unique(np.concatenate(found))] if found else self.rows.iloc[:0]


def load_history(path: Path) -> dict[str, Any]:
    """The server-wide context of `aiflow serve-model fraud --history FILE`."""
    return {"history": History(path)}


def combine(
    p: FraudParams, table: pd.DataFrame, sizes: list[int], bodies: list[Any], context: dict[str, Any]
) -> tuple[pd.DataFrame, ScoreOptions]:
    """Requests as one batch (`sizes[k]` rows of `table` each), each with its own past and its own (renumbered)
    cards and terminals."""
    if "customer_id" not in table:  # ULB: no windows, nothing to keep apart
        return table, ScoreOptions()
    server: History | None = context.get("history")
    table = table.copy()  # its ids are renumbered; the gated batch keeps the request's own
    offsets = np.cumsum([0, *sizes[:-1]])
    starts = np.minimum.reduceat(table["tx_datetime"].to_numpy("datetime64[ns]").view(np.int64), offsets)
    past: list[pd.DataFrame] = []
    owners = [np.repeat(np.arange(len(sizes)), sizes)]
    for k, (offset, size, body) in enumerate(zip(offsets, sizes, bodies)):
        if not body.history and server is None:
            continue  # no past but its own rows (the usual request)
        mine = table.iloc[offset : offset + size]
        own = [handbook_to_canonical(_handbook(body.history), "request history")] if body.history else []
        found = [m for m in [*own, *([server.relevant(mine)] if server else [])] if len(m)]
        times = [int(m["tx_datetime"].min().value) for m in found] + ([server.start] if server else [])
        starts[k] = min(starts[k], *times)
        past += found
        owners += [np.full(len(m), k) for m in found]
    history = pd.concat(past, ignore_index=True)[list(past[0].columns)] if past else pd.DataFrame()
    request = np.concatenate(owners)
    n = len(table)
    for column in ("customer_id", "terminal_id"):  # (request, id) -> a fresh id: no request sees another's rows
        ids = np.concatenate([table[column].to_numpy(np.int64), *(m[column].to_numpy(np.int64) for m in past)])
        if len(ids) and 0 <= ids.min() and ids.max() < 2**31:
            fresh = request * 2**31 + ids  # the cheap way, where ids fit
        else:
            fresh = pd.MultiIndex.from_arrays([request, ids]).factorize()[0].astype(np.int64)
        table[column] = fresh[:n]
        if past:
            history[column] = fresh[n:]
    if len(history):
        history = history.astype({"tx_fraud": "int64", "tx_amount": "float64"})
    return table, ScoreOptions(history_rows=history, past_from=np.repeat(starts, sizes))


def describe(p: FraudParams, model_dir: Path, model: str) -> dict[str, Any]:
    return {
        "threshold": p.evaluate.decision_threshold,
        "decision": "fraud when fraud_probability >= threshold",
        "windows": {
            "customer_days": p.prepare.customer_windows_days,
            "terminal_days": p.prepare.terminal_windows_days,
            "delay_days": p.prepare.delay_days,
        },
    }


def onnx(p: FraudParams, model_dir: Path, export_dir: Path, model: str, int8: bool) -> Any:
    """Every exported fraud graph takes the feature rows as `x` (float32), in the trained order."""
    from domains.common.serving import onnx_predictor

    feed = {model: lambda x: {"x": np.ascontiguousarray(x, dtype=np.float32)}}
    return onnx_predictor(export_dir, [model], int8, feed)
