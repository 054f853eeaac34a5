"""The fraud domain's acquire and prepare steps: sources in, leak-free features and time split out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from domains.fraud.features import build_features, feature_columns, time_split
from domains.fraud.loaders import handbook_to_canonical, read_handbook, read_ulb
from domains.fraud.params import FraudParams
from domains.fraud.synthetic import generate_transactions


def acquire(p: FraudParams, out_dir: Path) -> pd.DataFrame:
    """The canonical transactions table from the configured source (the source is only read)."""
    if p.data.source == "synthetic":
        return handbook_to_canonical(generate_transactions(p.synthetic, p.seed))
    reader = {"handbook": read_handbook, "ulb": read_ulb}[p.data.source]
    return reader(Path(p.data.path))


def prepare(p: FraudParams, table: pd.DataFrame, acquire_dir: Path, out_dir: Path) -> None:
    table = table.sort_values(["tx_datetime", "transaction_id"], kind="stable").reset_index(drop=True)
    q = p.prepare
    features = build_features(table, q.customer_windows_days, q.terminal_windows_days, q.delay_days)
    names = feature_columns(features)
    # Warm-up before training starts: the longest window of the features this data has.
    warmup = max(
        [
            0,
            *(q.customer_windows_days if "customer_id" in table else []),
            *((w + q.delay_days for w in q.terminal_windows_days) if "terminal_id" in table else []),
        ]
    )
    masks = time_split(table["tx_datetime"], q, warmup)
    split = np.select([masks["train"], masks["val"], masks["test"]], ["train", "val", "test"], default="")
    frame = features[names].assign(
        split=split,
        label=table["tx_fraud"].to_numpy(),
        day=table["tx_datetime"].dt.normalize(),
        hour=table["tx_datetime"].dt.hour.to_numpy(),  # not a feature: evaluate's hour slices
        transaction_id=table["transaction_id"].to_numpy(),
    )
    if "customer_id" in table:
        frame["card_id"] = table["customer_id"].to_numpy()
    frame = frame[split != ""].reset_index(drop=True)
    frame.to_parquet(out_dir / "features.parquet")
    summary = {
        split_name: {
            "rows": int((frame["split"] == split_name).sum()),
            "frauds": int(frame.loc[frame["split"] == split_name, "label"].sum()),
            "first_day": str(frame.loc[frame["split"] == split_name, "day"].min().date()),
            "last_day": str(frame.loc[frame["split"] == split_name, "day"].max().date()),
        }
        for split_name in ("train", "val", "test")
    }
    (out_dir / "features.json").write_text(json.dumps({"features": names, "splits": summary}, indent=2))
