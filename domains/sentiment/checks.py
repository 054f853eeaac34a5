"""The sentiment gate: the shared item-table checks plus the text's own, one row per document.

Check names (what gate.severity overrides): the shared ones (item_id:unique, split:known,
label:in_classes, split_leakage, duplicate_items, class_count_in_split:enough,
class_share_in_split:in_band, <split>:every_class_present) and

- decoding:utf8            the document's bytes are UTF-8 (block; the failure names the file / line / row)
- text:not_blank           not empty or whitespace only (quarantine)
- n_tokens:typical_length  log(tokens) within length_outlier_z robust standard deviations (info: long reviews exist)
- markup:no_residue        no HTML tags or entities left, e.g. IMDB's <br /> (info: prepare.strip_markup removes it)
- stars_agree_with_label   aclimdb: a positive review has over 5 stars, a negative one 5 or fewer (warn)
- <split>:enough_docs      train and test hold at least min_docs_per_split documents (block)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from domains.common.gate import GateSuite
from domains.common.items import (
    HASH,
    ID,
    ITEM_SEVERITIES,
    LABEL,
    SPLIT,
    class_presence_expectations,
    content_hash,
    item_columns,
    item_table_checks,
    with_item_columns,
)
from domains.common.params import Severity
from domains.sentiment.loaders import REQUIRED_SPLITS
from domains.sentiment.params import SentimentParams
from domains.sentiment.text import markup_count, tokenise

LABEL_INDEX = "label_index"  # position of the label in data.classes (1: positive), -1 outside them

SEVERITIES: dict[str, Severity] = {
    **ITEM_SEVERITIES,
    "text:not_blank": "quarantine",
    "n_tokens:typical_length": "info",  # a fact about the corpus, reported; not a fault
    "markup:no_residue": "info",  # stripped before tokenising (prepare.strip_markup): reported, not a fault
    "stars_agree_with_label": "warn",
}


def with_gate_columns(documents: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """The loaders' table plus what the gate checks: label index, length, tokens, markup, content hash,
    and the shared per-split class counts and shares."""
    text = documents["text"]
    facts = documents.assign(
        **{
            LABEL_INDEX: documents[LABEL].map({c: i for i, c in enumerate(classes)}).fillna(-1).astype("int64"),
            "length": text.str.len().astype("int64"),
            "n_tokens": pd.Series([len(tokenise(t)) for t in text], index=text.index, dtype="int64"),
            "markup": pd.Series([markup_count(t) for t in text], index=text.index, dtype="int64"),
            HASH: [content_hash(t.encode("utf-8")) for t in text],
        }
    )
    return with_item_columns(facts)


def _not_blank(text: pd.Series) -> pd.Series:
    return text.str.strip().str.len() > 0


def _typical_length(z_max: float):
    """Robust z-score of log(1 + tokens) (median and MAD): lengths vary over orders of magnitude."""

    def check(n_tokens: pd.Series) -> pd.Series:
        x = np.log1p(n_tokens.to_numpy(dtype=float))
        spread = 1.4826 * np.median(np.abs(x - np.median(x)))
        if spread == 0:
            return pd.Series(True, index=n_tokens.index)
        return pd.Series(
            (np.abs(x - np.median(x)) / spread <= z_max) | (n_tokens.to_numpy() == 0), index=n_tokens.index
        )

    return check


def _stars_agree(table: pd.DataFrame) -> pd.Series:
    agree = ((table[LABEL_INDEX] == 1) == (table["stars"] > 5)).fillna(True).astype(bool)  # no stars: nothing to check
    return (table[LABEL_INDEX] < 0) | agree


def documents_schema(p: SentimentParams) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            **item_columns(p.data.classes, p.gate),
            "text": pa.Column("str", pa.Check(_not_blank, name="not_blank")),
            "decoding": pa.Column("str", pa.Check(lambda s: s == "", name="utf8")),
            "n_tokens": pa.Column("int64", pa.Check(_typical_length(p.gate.length_outlier_z), name="typical_length")),
            "markup": pa.Column("int64", pa.Check(lambda s: s == 0, name="no_residue")),
            "length": pa.Column("int64"),
            LABEL_INDEX: pa.Column("int64"),
            "stars": pa.Column("Int64", nullable=True),
        },
        checks=[*item_table_checks(), pa.Check(_stars_agree, name="stars_agree_with_label")],
        coerce=True,
        strict=False,
    )


def split_expectations(p: SentimentParams) -> list:
    import great_expectations.expectations as gxe  # heavy import, only when gating

    enough = [
        gxe.ExpectTableRowCountToBeBetween(
            min_value=p.gate.min_docs_per_split,
            row_condition=f'{SPLIT}=="{split}"',
            condition_parser="pandas",
            meta={"check": f"{split}:enough_docs"},
        )
        for split in REQUIRED_SPLITS
    ]
    return [*enough, *class_presence_expectations(p.data.classes, REQUIRED_SPLITS)]


def gate_suite(p: SentimentParams) -> GateSuite:
    return GateSuite(
        schema=documents_schema(p), expectations=split_expectations(p), severities=SEVERITIES, id_column="item_id"
    )


# --- scoring: the same document checks on a batch without splits, labels optional ------------------


def with_scoring_columns(documents: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """A batch to score plus the facts its gate checks (as with_gate_columns, without splits). The label
    column stays only where some document has one (and is then a string column with missing values)."""
    labelled = documents[LABEL].notna().any()
    facts = documents.drop(columns=[c for c in (SPLIT, *([] if labelled else [LABEL])) if c in documents])
    if labelled:
        facts[LABEL] = facts[LABEL].astype("string")
    text = facts["text"]
    return facts.assign(
        **{
            LABEL_INDEX: (
                facts[LABEL].map({c: i for i, c in enumerate(classes)}).astype("Float64").fillna(-1).astype("int64")
                if labelled
                else -1
            ),
            "n_tokens": pd.Series([len(tokenise(t)) for t in text], index=text.index, dtype="int64"),
            "length": text.str.len().astype("int64"),
            "markup": pd.Series([markup_count(t) for t in text], index=text.index, dtype="int64"),
            HASH: [content_hash(t.encode("utf-8")) for t in text],
        }
    )


def _first_copy(table: pd.DataFrame) -> pd.Series:
    """False for the second and later copies of the same text in the batch."""
    return ~table.duplicated([HASH], keep="first")


def scoring_schema(p: SentimentParams) -> pa.DataFrameSchema:
    """documents_schema minus splits and label rules: a label, where given, is still one of the classes."""
    training = documents_schema(p).columns
    return pa.DataFrameSchema(
        {
            ID: training[ID],
            HASH: training[HASH],
            LABEL: pa.Column(
                "string", pa.Check.isin(list(p.data.classes), name="in_classes"), nullable=True, required=False
            ),
            **{
                name: training[name]
                for name in ("text", "decoding", "n_tokens", "markup", "length", LABEL_INDEX, "stars")
            },
        },
        checks=[pa.Check(_first_copy, name="duplicate_items")],
        coerce=True,
        strict=False,
    )


def scoring_suite(p: SentimentParams) -> GateSuite:
    """The training suite minus what needs labels or splits (class counts and shares, leakage, split sizes, stars)."""
    return GateSuite(schema=scoring_schema(p), expectations=[], severities=SEVERITIES, id_column="item_id")
