"""A fast yes for the scoring gate's row-level checks, for the HTTP endpoint's hot path.

pandera's `validate` costs 20-40 ms on a table of a few rows (its bookkeeping, not the checks), which
is most of a request's time. `RowGate` runs the same checks from the same schema objects (each
`pa.Check` through pandera's own `Check.__call__`, each column's dtype through its own `try_coerce`),
without the bookkeeping, and answers only "every item passes" with the coerced table, or "maybe not"
(None). On None the caller runs the full pandera gate, which names every failing item and check: this
path never refuses anything, so it cannot word a refusal differently.

It is conservative: presence, dtype, nulls and uniqueness always count (as pandera's block defaults
do), and a schema feature it does not model (an index, parsers, defaults, groupby checks, ...) makes
`compile` return None, so the caller always uses pandera. Checks of severity warn or info are not
run: they never refuse a request, and their results are not returned per request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine

from domains.common.gate import _short
from domains.common.params import Severity

REFUSING = ("block", "quarantine")


@dataclass(frozen=True)
class _Column:
    key: str  # the schema key (a regex for regex columns): what check names and severities use
    spec: pa.Column
    checks: tuple[pa.Check, ...]  # the ones that can refuse an item


@dataclass(frozen=True)
class RowGate:
    columns: tuple[_Column, ...]
    table_checks: tuple[pa.Check, ...]
    coerce: bool

    def passes(self, table: pd.DataFrame) -> pd.DataFrame | None:
        """The table coerced as pandera coerces it when every refusing check passes; None when one may not."""
        try:
            coerced: dict[str, pd.Series] = {}
            for column in self.columns:
                names = _matching(column, table.columns)
                if not names and column.spec.required:
                    return None
                for name in names:
                    series = self._series(column.spec, table[name])
                    if series is None or not all(_passed(check, series) for check in column.checks):
                        return None
                    coerced[name] = series
            out = pd.DataFrame({name: coerced.get(name, table[name]) for name in table.columns}, index=table.index)
            return out if all(_passed(check, out) for check in self.table_checks) else None
        except Exception:  # a coercion or a check that raises: pandera says what it is
            return None

    def _series(self, spec: pa.Column, series: pd.Series) -> pd.Series | None:
        """The column as pandera leaves it (coerced where asked), None unless dtype, nulls and uniqueness hold."""
        dtype = spec.dtype
        if dtype is not None:
            # a column already of exactly its dtype is what coercing would give (a copy): skip it, ~0.1 ms a
            # column (exactly: `check` also accepts datetime64[us] for [ns], which coercing converts)
            exact = getattr(dtype, "type", None) == series.dtype
            matches = dtype.check(pandas_engine.Engine.dtype(series.dtype))
            if not exact and (self.coerce or spec.coerce):
                series = dtype.try_coerce(series)
                matches = dtype.check(pandas_engine.Engine.dtype(series.dtype))
            if not matches:
                return None
        if not spec.nullable and series.isna().any():
            return None
        if spec.unique and series.duplicated().any():
            return None
        return series


def _passed(check: pa.Check, data: pd.Series | pd.DataFrame) -> bool:
    return bool(check(data).check_passed)


_MATCHED: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def _matching(column: _Column, names: pd.Index) -> list[str]:
    """The table's columns a schema column validates: its name, or (regex) every name it matches, as pandera."""
    if not column.spec.regex:
        return [column.key] if column.key in names else []
    cache_key = (column.key, tuple(names))  # a request's columns are the same every time
    if cache_key not in _MATCHED:
        _MATCHED[cache_key] = [n for n in names if isinstance(n, str) and re.match(column.key, n)]
    return _MATCHED[cache_key]


def compile(schema: pa.DataFrameSchema, severities: dict[str, Severity]) -> RowGate | None:
    """The fast gate of `schema` under `severities`; None where the schema uses what RowGate does not model."""
    unmodelled = (
        schema.index is not None
        or schema.dtype is not None
        or schema.parsers
        or schema.unique
        or schema.strict is not False
        or schema.ordered
        or schema.unique_column_names
        or schema.add_missing_columns
        or schema.drop_invalid_rows
        or schema.on_missing_columns is not None
    )
    if unmodelled or any(_groupwise(check) for check in schema.checks):
        return None
    columns = []
    for key, spec in schema.columns.items():
        if (
            spec.parsers
            or spec.default is not None
            or spec.drop_invalid_rows
            or spec.on_missing is not None
            or any(_groupwise(check) for check in spec.checks)
        ):
            return None
        refusing = tuple(c for c in spec.checks if _refuses(f"{key}:{_short(c.name)}", severities))
        columns.append(_Column(str(key), spec, refusing))
    table_checks = tuple(c for c in schema.checks if _refuses(_short(c.name), severities))
    return RowGate(tuple(columns), table_checks, bool(schema.coerce))


def _groupwise(check: pa.Check) -> bool:
    return check.groupby is not None


def _refuses(name: str, severities: dict[str, Severity]) -> bool:
    return severities.get(name, "block") in REFUSING  # as the gate names and weighs them (unnamed: block)
