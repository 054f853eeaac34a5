"""The gate of a labelled item table: one row per document or image, whatever the payload.

Text and image domains record one row per item at `acquire` (id, split, label, content hash and
the payload's own facts); the same checks then hold for both:

- `item_id` unique, `split` one of SPLITS, `label` one of the declared classes;
- `split_leakage`: the same content (by hash) in two splits; the copy in the later split fails
  (train < val < test) and is quarantined by default: the training item stays, the leaked copy is set
  aside, and more than gate.max_quarantine_fraction of such copies blocks;
- `duplicate_items`: the same content twice in one split; repeats after the first fail (info: SST-2's
  repeated phrases, IMDB's repeated reviews are what those data sets are, not a fault);
- `class_count_in_split`: every class has enough items in every split (block);
- `class_share_in_split`: each class's share of its split inside a band (warn);
- `<split>:every_class_present`: Great Expectations, per split; names the absent classes.

Domains add their payload's columns and checks (see `domains.common.images`) next to these.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pandera.pandas as pa

from domains.common.params import ItemGateParams, Severity

SPLITS: tuple[str, ...] = ("train", "val", "test")  # in order: a later copy of an item is the leak
ID, SPLIT, LABEL, HASH = "item_id", "split", "label", "content_hash"
CLASS_COUNT, CLASS_SHARE = "class_count_in_split", "class_share_in_split"

ITEM_SEVERITIES: dict[str, Severity] = {
    "split_leakage": "quarantine",  # a test item seen in training inflates every metric: set the later copy aside
    "duplicate_items": "info",
    f"{CLASS_SHARE}:in_band": "warn",
}


def content_hash(data: bytes) -> str:
    """The identity of an item's content: equal payloads, equal hashes, wherever the files lie."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def with_item_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The table plus each row's class count and class share within its split (for the gate)."""
    groups = table.groupby([SPLIT, LABEL], dropna=False, sort=False)[LABEL].transform("size")
    split_sizes = table.groupby(SPLIT, dropna=False, sort=False)[SPLIT].transform("size")
    return table.assign(**{CLASS_COUNT: groups.astype("int64"), CLASS_SHARE: (groups / split_sizes).astype("float64")})


def _split_rank(split: pd.Series) -> pd.Series:
    return split.map({s: i for i, s in enumerate(SPLITS)}).fillna(len(SPLITS))


def no_split_leakage(table: pd.DataFrame) -> pd.Series:
    """False for each item whose content already appears in an earlier split."""
    rank = _split_rank(table[SPLIT])
    first = rank.groupby(table[HASH], sort=False).transform("min")
    return rank <= first


def no_duplicates_in_split(table: pd.DataFrame) -> pd.Series:
    """False for the second and later copies of the same content within one split."""
    return ~table.duplicated([SPLIT, HASH], keep="first")


def identity_columns() -> dict[str, pa.Column]:
    """Which item, in which split, with what content: the columns every item table has."""
    return {
        ID: pa.Column("str", unique=True, report_duplicates="exclude_first"),
        SPLIT: pa.Column("str", pa.Check.isin(list(SPLITS), name="known")),
        HASH: pa.Column("str"),
    }


def item_columns(classes: Sequence[str], p: ItemGateParams) -> dict[str, pa.Column]:
    """identity_columns plus the declared classes: label in the set, enough of each, shares in the band."""
    return {
        **identity_columns(),
        LABEL: pa.Column("str", pa.Check.isin(list(classes), name="in_classes")),
        CLASS_COUNT: pa.Column("int64", pa.Check.ge(p.min_per_class, name="enough")),
        CLASS_SHARE: pa.Column("float64", pa.Check.in_range(p.class_share_min, p.class_share_max, name="in_band")),
    }


def item_table_checks() -> list[pa.Check]:
    return [pa.Check(no_split_leakage, name="split_leakage"), pa.Check(no_duplicates_in_split, name="duplicate_items")]


def class_presence_expectations(classes: Sequence[str], splits: Sequence[str]) -> list:
    """Every declared class present in every split (GX names the absent ones)."""
    import great_expectations.expectations as gxe  # heavy import, only when gating

    return [
        gxe.ExpectColumnDistinctValuesToContainSet(
            column=LABEL,
            value_set=list(classes),
            row_condition=f'{SPLIT}=="{split}"',
            condition_parser="pandas",
            meta={"check": f"{split}:every_class_present"},
        )
        for split in splits
    ]


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded, stratified boolean mask selecting about `fraction` of each class (at least one item
    of a class with two or more), independent of row order within a class."""
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(labels), dtype=bool)
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        take = int(round(fraction * len(rows)))
        take = min(max(take, 1 if len(rows) > 1 else 0), len(rows) - 1) if len(rows) > 1 else 0
        chosen[rng.permutation(rows)[:take]] = True
    return chosen
