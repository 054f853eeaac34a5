"""The defect gate: the shared image and item checks, plus what unsupervised defect detection needs.

Row-level checks name the file (the suite's id column is item_id):
- `no_defect_in_training`: training and held-out images are all good (the models learn "normal");
- `mask_present`: every defect image has its mask, where the source has masks;
- `mask_error:decodes`, `mask_same_size`: masks decode and match their image's size;
- `mask_soft_fraction:binary`: masks are binary (see DefectsGateParams.max_soft_mask_fraction);
- `mask_not_empty` (quarantine): a defect image whose mask marks nothing (its annotation is missing: set aside);
- `mask_empty_on_good`: a good image whose mask marks a defect;
- `mode:consistent`: one channel count and pixel type (sizes: the shared `shape:consistent`);
- `split_leakage`: the same pixels in training and test (shared; the test copy is quarantined).
Great Expectations checks the counts: enough good images to train on, to choose the threshold
on and to test, and at least one defective test image.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from domains.common.gate import GateSuite
from domains.common.images import DECODE_ERROR, IMAGE_SEVERITIES, image_columns, image_table_checks
from domains.common.items import ID, ITEM_SEVERITIES, LABEL, SPLIT, identity_columns, item_table_checks
from domains.common.params import Severity
from domains.defects.loaders import GOOD, MASK_PATH, MASKS_EXPECTED
from domains.defects.masks import MASK_ERROR
from domains.defects.params import DefectsGateParams, DefectsParams

MODE = "mode"  # "<channels>x<dtype>", e.g. "1xuint8"
# source -> (images share one size, masks are binary); what the gate expects unless params say otherwise
SOURCE_CONVENTIONS: dict[str, tuple[bool, bool]] = {
    "synthetic": (True, True),
    "mvtec": (True, True),
    "magnetic-tile": (False, False),
}
COUNTS = {  # constant columns acquire adds: GX reports the observed count against the bound
    "train_good_images": ("train", True, "min_train_good", "enough_good_training_images"),
    "val_good_images": ("val", True, "min_val_good", "enough_good_held_out_images"),
    "test_good_images": ("test", True, "min_test_good", "enough_good_test_images"),
    "test_defective_images": ("test", False, "min_test_defective", "enough_defective_test_images"),
}

SEVERITIES: dict[str, Severity] = {
    **IMAGE_SEVERITIES,
    "split_leakage": ITEM_SEVERITIES["split_leakage"],
    "duplicate_items": ITEM_SEVERITIES["duplicate_items"],
    # A defect image with an empty mask has no ground truth to score pixels against (Magnetic-Tile has 4):
    # set aside with its reason, so the rest is evaluated; more than max_quarantine_fraction blocks.
    "mask_not_empty": "quarantine",
}


def split_counts(table: pd.DataFrame) -> dict[str, int]:
    """The counts COUNTS names: good images per split, defective test images."""
    good = table[LABEL] == GOOD
    return {
        column: int(((table[SPLIT] == split) & (good if is_good else ~good)).sum())
        for column, (split, is_good, _, _) in COUNTS.items()
    }


def with_gate_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The facts table plus the mode of each image and the split counts the GX checks read."""
    return table.assign(**{MODE: table["channels"].astype(str) + "x" + table["dtype"]}, **split_counts(table))


def resolved_gate(p: DefectsParams) -> DefectsGateParams:
    """The gate params with the source's conventions filled in where params leave them open."""
    same_size, binary = SOURCE_CONVENTIONS[p.data.source]
    g = p.gate
    return g.model_copy(
        update={
            # categories of one dataset may differ in size (MVTec AD: 700 to 1024 px): prepare resizes them all
            "consistent_shape": (same_size and not p.data.categories)
            if g.consistent_shape is None
            else g.consistent_shape,
            "max_soft_mask_fraction": (0.0 if binary else 1.0)
            if g.max_soft_mask_fraction is None
            else g.max_soft_mask_fraction,
        }
    )


def _decoded(t: pd.DataFrame) -> pd.Series:
    return (t[MASK_PATH] != "") & (t[MASK_ERROR] == "") & (t[DECODE_ERROR] == "")


def _no_defect_in_training(t: pd.DataFrame) -> pd.Series:
    return (t[SPLIT] == "test") | (t[LABEL] == GOOD)


def _mask_present(t: pd.DataFrame) -> pd.Series:
    """Defect images in test have their masks (a defect image in training is no_defect_in_training's)."""
    return (t[SPLIT] != "test") | (t[LABEL] == GOOD) | ~t[MASKS_EXPECTED].astype(bool) | (t[MASK_PATH] != "")


def _mask_same_size(t: pd.DataFrame) -> pd.Series:
    return ~_decoded(t) | ((t["mask_height"] == t["height"]) & (t["mask_width"] == t["width"]))


def _mask_not_empty(t: pd.DataFrame) -> pd.Series:
    return (t[LABEL] == GOOD) | ~_decoded(t) | (t["mask_defect_pixels"] > 0)


def _mask_empty_on_good(t: pd.DataFrame) -> pd.Series:
    return (t[LABEL] != GOOD) | ~_decoded(t) | (t["mask_defect_pixels"] == 0)


def _consistent(values: pd.Series) -> pd.Series:
    """True for the most common value; undecoded images ("0x") pass here (`decodes` reports them)."""
    undecoded = values == "0x"
    known = values[~undecoded]
    return undecoded | (values == known.mode().iloc[0]) if len(known) else undecoded


def defects_schema(p: DefectsParams) -> pa.DataFrameSchema:
    g = resolved_gate(p)
    return pa.DataFrameSchema(
        {
            **identity_columns(),
            LABEL: pa.Column("str"),
            **image_columns(g),
            MODE: pa.Column("str", pa.Check(_consistent, name="consistent")),
            MASK_PATH: pa.Column("str"),
            MASKS_EXPECTED: pa.Column("bool"),
            MASK_ERROR: pa.Column("str", pa.Check.equal_to("", name="decodes")),
            "mask_soft_fraction": pa.Column(
                "float64", pa.Check.le(g.max_soft_mask_fraction, name="binary"), nullable=True
            ),
        },
        checks=[
            *image_table_checks(),
            *item_table_checks(),
            pa.Check(_no_defect_in_training, name="no_defect_in_training"),
            pa.Check(_mask_present, name="mask_present"),
            pa.Check(_mask_same_size, name="mask_same_size"),
            pa.Check(_mask_not_empty, name="mask_not_empty"),
            pa.Check(_mask_empty_on_good, name="mask_empty_on_good"),
        ],
        strict=False,
    )


def count_expectations(p: DefectsParams) -> list:
    import great_expectations.expectations as gxe  # heavy import, only when gating

    return [
        gxe.ExpectColumnMinToBeBetween(column=column, min_value=getattr(p.gate, bound), meta={"check": check})
        for column, (_, _, bound, check) in COUNTS.items()
    ]


def gate_suite(p: DefectsParams) -> GateSuite:
    return GateSuite(schema=defects_schema(p), expectations=count_expectations(p), severities=SEVERITIES, id_column=ID)


def scoring_suite(p: DefectsParams) -> GateSuite:
    """The training suite minus splits, labels, masks and counts: the per-image checks and one mode
    per batch. Sizes are the model's: see image_scoring.check_as_trained."""
    from domains.common.image_scoring import scoring_schema_columns, scoring_table_checks

    schema = pa.DataFrameSchema(
        {**scoring_schema_columns(resolved_gate(p)), MODE: pa.Column("str", pa.Check(_consistent, name="consistent"))},
        checks=scoring_table_checks(),
        strict=False,
    )
    return GateSuite(schema=schema, severities=SEVERITIES, id_column=ID)
