"""Score new transactions with a trained fraud model.

The window features need each card's and terminal's past. It comes from the batch itself (its
earlier rows) and, when given, a history file of earlier labelled transactions in the same format
(`aiflow score fraud new.csv --history last_month.csv`); the training data is never re-read.
Rows whose available past is shorter than the longest window are marked `short_history`: their
counts and averages cover less time than the model learned from. Terminal risk uses labels only
once known (after `delay_days`); batch rows without a label count as not (yet) fraud.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch

from domains.common.contract import Reference, Scored, ScoreOptions
from domains.common.errors import DataError
from domains.common.modelstore import cached_load
from domains.common.trainer import predict
from domains.fraud.features import NS_PER_DAY, build_features
from domains.fraud.loaders import read_handbook, read_ulb
from domains.fraud.params import FraudParams
from domains.fraud.train import MODELS, load_mlp, load_split, score_all


def read_batch(p: FraudParams, path: Path, source: str) -> pd.DataFrame:
    """New transactions in a training format; the label (TX_FRAUD / Class) is optional."""
    return {"handbook": read_handbook, "ulb": read_ulb}[source](path, labels=False)


def reference(p: FraudParams, prepared_dir: Path, train_dir: Path) -> Reference:
    frame, names = load_split(prepared_dir)
    test = frame[frame["split"] == "test"]
    return Reference(
        frame[frame["split"] == "train"][names].reset_index(drop=True),
        score_all(train_dir, test[names].to_numpy(np.float32)),
    )


def score_batch(p: FraudParams, model_dir: Path, model: str, table: pd.DataFrame, options: ScoreOptions) -> Scored:
    history = options.history_rows if options.history_rows is not None else _history(options.history)
    labelled = "tx_fraud" in table
    batch = table.assign(tx_fraud=table["tx_fraud"] if labelled else 0, _batch=True, _order=np.arange(len(table)))
    both = pd.concat([history.assign(_batch=False, _order=-1), batch], ignore_index=True) if len(history) else batch
    both = both.sort_values(["tx_datetime", "_batch", "_order"], kind="stable").reset_index(drop=True)
    q = p.prepare
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
    start = options.past_from if options.past_from is not None else both["tx_datetime"].min().value
    known_days = (t - start) / NS_PER_DAY
    needed = max(
        [
            0,
            *(q.customer_windows_days if "customer_id" in table else []),
            *((w + q.delay_days for w in q.terminal_windows_days) if "terminal_id" in table else []),
        ]
    )
    threshold = p.evaluate.decision_threshold
    predictions = pd.DataFrame(
        {
            "transaction_id": table["transaction_id"].to_numpy(),
            "fraud_probability": probability,
            "decision": (probability >= threshold).astype(np.int64),
            "short_history": known_days < needed,
        },
        index=table.index,
    )
    notes = [
        f"decision: fraud_probability >= {threshold} (fraud.evaluate.decision_threshold)",
        f"history: {len(history)} earlier transaction(s)"
        if len(history)
        else "history: the batch's own earlier rows only (pass --history for the windows' past)",
        f"{int(predictions['short_history'].sum())} of {len(predictions)} rows have less than {needed} days of "
        "past (short_history)",
    ]
    shadow = _shadow(table["tx_fraud"].to_numpy(), probability) if labelled else None
    drift_frame = pd.DataFrame(x, columns=names)
    return Scored(predictions, drift_frame, probability, shadow, notes)


def _history(path: Path | None) -> pd.DataFrame:
    if path is None:
        return pd.DataFrame()
    history = read_handbook(path)  # labelled: terminal risk needs the labels
    bad = history["tx_datetime"].isna() | ~pd.to_numeric(history["tx_amount"], errors="coerce").notna()
    if bad.any() or not history["tx_fraud"].isin([0, 1]).all():
        raise DataError(f"{path}: history has rows without a valid time, amount or 0/1 label; gate it first")
    return history.astype({"tx_fraud": "int64", "tx_amount": "float64"})


def _predict(model_dir: Path, model: str, x: np.ndarray) -> np.ndarray:
    if model not in MODELS:
        raise DataError(f"fraud: unknown model '{model}'; trained: {', '.join(MODELS)}")
    if model == "mlp":
        return torch.sigmoid(
            torch.from_numpy(predict(cached_load(model_dir / "mlp.pt", load_mlp), torch.from_numpy(x)))
        ).numpy()
    return cached_load(model_dir / f"{model}.joblib", joblib.load).predict_proba(x)[
        :, 1
    ]  # verified against its DVC hash first


def _shadow(y: np.ndarray, probability: np.ndarray) -> dict[str, float] | None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(y)) < 2:
        return {"fraud_rate": float(y.mean())}
    return {
        "average_precision": float(average_precision_score(y, probability)),
        "auroc": float(roc_auc_score(y, probability)),
        "fraud_rate": float(y.mean()),
    }
