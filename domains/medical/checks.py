"""The medical imaging gate: the shared item and image checks over the table of per-image facts.

Check names (what params' gate.severity overrides): `label:in_classes`, `class_count_in_split:enough`,
`class_share_in_split:in_band`, `split_leakage`, `duplicate_items`, `decode_error:decodes`,
`shape:consistent`, `dtype:supported`, `nan_pixels:none`, `pixel_values_in_range`, `pixel_std:not_constant`,
`saturated_fraction:not_saturated`, `<split>:every_class_present`, `enough_images`.
"""

from __future__ import annotations

import pandera.pandas as pa

from domains.common.gate import GateSuite
from domains.common.images import IMAGE_SEVERITIES, image_columns, image_table_checks
from domains.common.items import (
    ID,
    ITEM_SEVERITIES,
    SPLITS,
    class_presence_expectations,
    item_columns,
    item_table_checks,
)
from domains.medical.params import MedicalParams


def gate_suite(p: MedicalParams) -> GateSuite:
    import great_expectations.expectations as gxe  # heavy import, only when gating

    schema = pa.DataFrameSchema(
        {**item_columns(p.data.classes, p.gate), **image_columns(p.gate)},
        checks=[*item_table_checks(), *image_table_checks()],
        coerce=True,
        strict=False,
    )
    expectations = [
        *class_presence_expectations(p.data.classes, SPLITS),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=p.gate.min_per_class * len(p.data.classes) * len(SPLITS), meta={"check": "enough_images"}
        ),
    ]
    return GateSuite(schema, expectations, {**ITEM_SEVERITIES, **IMAGE_SEVERITIES}, id_column=ID)


def scoring_suite(p: MedicalParams) -> GateSuite:
    """The training suite minus splits and class counts: per-image checks, and the label (when the
    batch has one) among the classes. Sizes are the model's: see image_scoring.check_as_trained."""
    from domains.common.image_scoring import scoring_schema_columns, scoring_table_checks
    from domains.common.items import LABEL

    schema = pa.DataFrameSchema(
        {
            **scoring_schema_columns(p.gate),
            LABEL: pa.Column("str", pa.Check.isin(list(p.data.classes), name="in_classes"), required=False),
        },
        checks=scoring_table_checks(),
        coerce=True,
        strict=False,
    )
    return GateSuite(schema, (), {**ITEM_SEVERITIES, **IMAGE_SEVERITIES}, id_column=ID)
