"""What scoring a batch in chunks needs beyond the domain's own functions (domains/common/scoring.py).

- `ChunkGate`: the gate on each chunk; a chunk that blocks stops the batch, naming its rows;
  - `GateTally`: the results per chunk added up into one (counts summed, a failed check's detail
    per chunk naming its rows);
  - `SeenIds`: ids of earlier chunks, so an id repeated across chunks is caught as the whole
    batch's `<id>:unique` check would catch it (8 bytes a row: a sorted array of 64-bit hashes);
- `PredictionWriter`: output rows written chunk after chunk, Parquet in row groups of a fixed size
  (the file's bytes do not depend on where the chunks were cut) or CSV appended.

What per-chunk gating does not see: batch-level expectations (a median, a share of rows) are judged
per chunk, and a rule over several rows other than id uniqueness (e.g. a duplicate text's hash) only
within its chunk. The share of quarantined rows is judged over the whole batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.common.errors import GateBlocked
from domains.common.gate import MAX_EXAMPLES, CheckResult, GateResult, GateSuite, resolve_severities, run_gate
from domains.common.params import GateParams

ROW_GROUP = 65_536  # Parquet rows per row group, whatever the chunks


def rows_label(index: pd.Index) -> str:
    """'rows 101-200': a chunk's rows in the input, counted from 1."""
    return f"rows {index[0] + 1}-{index[-1] + 1}" if len(index) else "no rows"


class GateTally:
    """The gate's results of a batch's chunks as one GateResult; a batch of one chunk keeps its own."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, GateResult]] = []

    def add(self, rows: str, result: GateResult) -> None:
        self.parts.append((rows, result))

    def result(self) -> GateResult:
        if len(self.parts) == 1:
            return self.parts[0][1]
        names = list(dict.fromkeys(c.name for _, r in self.parts for c in r.checks))
        checks = [self._merged(name) for name in names]
        results = [r for _, r in self.parts]
        return GateResult(
            "warn" if any(r.verdict == "warn" for r in results) else "pass",
            sum(r.rows_in for r in results),
            sum(r.rows_passed for r in results),
            sum(r.rows_quarantined for r in results),
            checks,
            [],
        )

    def _merged(self, name: str) -> CheckResult:
        each = [(rows, c) for rows, r in self.parts for c in r.checks if c.name == name]
        failed = [(rows, c) for rows, c in each if not c.passed]
        first = failed[0][1] if failed else each[0][1]
        detail = "; ".join(f"{rows}: {c.detail}" for rows, c in failed[:3]) or first.detail
        if len(failed) > 3:
            detail += f"; and in {len(failed) - 3} more chunk(s)"
        return CheckResult(
            name,
            first.tool,
            first.severity,
            not failed,
            sum(c.failing for _, c in each),
            sum(c.total for _, c in each),
            detail,
            [e for _, c in failed for e in c.examples][:MAX_EXAMPLES],
        )


class SeenIds:
    """The ids of earlier chunks, as sorted 64-bit hashes of their text (an id read as 7 or '7' is one id)."""

    def __init__(self) -> None:
        self.hashes = np.empty(0, dtype=np.uint64)

    def repeated(self, ids: pd.Series) -> np.ndarray:
        """Which of `ids` an earlier chunk had; then remember them."""
        hashes = pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy()
        seen = np.isin(hashes, self.hashes)
        self.hashes = np.union1d(self.hashes, hashes)
        return seen


class ChunkGate:
    """The gate, chunk after chunk, with the same suite and severities; the quarantined share is left to the
    caller, who judges it over the whole batch (`gate.quarantine_reason`)."""

    def __init__(self, suite: GateSuite, params: GateParams, id_column: str, chunked: bool, batch: str) -> None:
        self.suite, self.id_column, self.batch = suite, id_column, batch
        self.params = params.model_copy(update={"max_quarantine_fraction": 1.0})
        column = suite.schema.columns.get(id_column)
        self.seen = SeenIds() if chunked and column is not None and column.unique else None
        self.tally = GateTally()

    def check(self, table: pd.DataFrame, rows: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The chunk's rows that passed and those quarantined; GateBlocked when it blocks."""
        result, kept, quarantine = run_gate(table, self.suite, self.params)
        if result.verdict == "block":
            self._block(rows, result.reasons)
        if self.seen is not None:
            result, kept, quarantine = self._repeated(result, kept, quarantine, rows)
        self.tally.add(rows, result)
        return kept, quarantine

    def result(self) -> GateResult:
        return self.tally.result()

    def _block(self, rows: str, reasons: list[str]) -> None:
        where = f" ({rows})" if rows else ""
        raise GateBlocked(
            [
                f"gate blocked the {self.batch}{where}: {len(reasons)} check(s) failed; no scores written",
                *(f"  {r}" for r in reasons),
            ]
        )

    def _repeated(
        self, result: GateResult, kept: pd.DataFrame, quarantine: pd.DataFrame, rows: str
    ) -> tuple[GateResult, pd.DataFrame, pd.DataFrame]:
        """Ids an earlier chunk had, judged as the whole batch's `<id>:unique` check would judge them."""
        assert self.seen is not None
        column = self.id_column
        ids = pd.concat([kept[column], quarantine[column]]) if column in quarantine else kept[column]
        again = ids[self.seen.repeated(ids)]
        if not len(again):
            return result, kept, quarantine
        name = f"{column}:unique"
        severity = resolve_severities(self.suite, self.params).get(name, "block")
        own = next((c for c in result.checks if c.name == name), None)
        check = _with_repeats(own, name, severity, again, result.rows_in)
        if severity == "block":
            self._block(rows, [check.line()])
        if severity == "quarantine":
            moved = kept[kept[column].isin(again)]
            kept = kept.drop(index=moved.index)
            quarantine = pd.concat([quarantine, moved.assign(quarantine_reason=name)]).sort_index()
        checks = [check if c.name == name else c for c in result.checks] + ([] if own else [check])
        verdict = result.verdict if severity == "info" else "warn"
        return GateResult(verdict, result.rows_in, len(kept), len(quarantine), checks, result.reasons), kept, quarantine


def _with_repeats(check: CheckResult | None, name: str, severity: Any, ids: pd.Series, total: int) -> CheckResult:
    """The chunk's `<id>:unique` result with the ids an earlier chunk already had (`ids`) added to it."""
    shown = [str(v) for v in ids.head(MAX_EXAMPLES)]
    earlier = f"{len(ids)} of {total} rows repeat an id of earlier rows"
    if check is None or check.passed:
        return CheckResult(name, "pandera", severity, False, len(ids), total, earlier, shown)
    return CheckResult(
        name,
        check.tool,
        check.severity,
        False,
        check.failing + len(ids),
        total,
        f"{check.detail}; {earlier}",
        (check.examples + shown)[:MAX_EXAMPLES],
    )


class PredictionWriter:
    """Output rows, chunk after chunk, into one Parquet file (row groups of ROW_GROUP rows) or one CSV file.

    The columns take the types of scored rows (`types`, from the first chunk with any): integer and boolean
    ones become nullable, so a chunk whose quarantined rows have no score writes the same types as one
    without. Rows before the types are known (chunks wholly quarantined) wait in memory.
    """

    def __init__(self, file: Path, csv: bool) -> None:
        self.file, self.csv = file, csv
        self.dtypes: dict[str, Any] | None = None
        self.waiting: list[pd.DataFrame] = []
        self.pending: list[Any] = []  # pyarrow tables not yet in a row group
        self.pending_rows = 0
        self.writer: Any = None
        self.schema: Any = None
        self.rows = 0

    def types(self, clean: pd.DataFrame) -> None:
        """The output's column types, from output rows that all have a score (once; later calls are ignored)."""
        if self.dtypes is not None:
            return
        self.dtypes = dict(clean.dtypes)
        if not self.csv:
            import pyarrow as pa

            self.schema = pa.Schema.from_pandas(clean.iloc[:0], preserve_index=False)

    def write(self, frame: pd.DataFrame) -> None:
        self.waiting.append(frame)
        if self.dtypes is not None:
            self._flush(final=False)

    def close(self) -> None:
        if self.dtypes is None:  # every row quarantined: the types they have
            self.types(pd.concat(self.waiting) if self.waiting else pd.DataFrame())
        self._flush(final=True)
        if self.writer is not None:
            self.writer.close()

    def _flush(self, final: bool) -> None:
        assert self.dtypes is not None
        nullable = {c: _nullable(t) for c, t in self.dtypes.items()}
        for frame in self.waiting:
            frame = frame.astype({c: t for c, t in nullable.items() if c in frame and t is not None})
            self.rows += len(frame)
            if self.csv:
                frame.to_csv(self.file, mode="a", header=not self.file.exists(), index=False)
            else:
                import pyarrow as pa

                self.pending.append(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))
                self.pending_rows += len(frame)
        self.waiting = []
        if not self.csv:
            self._row_groups(final)

    def _row_groups(self, final: bool) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.pending_rows < ROW_GROUP and not final:
            return
        table = pa.concat_tables(self.pending) if self.pending else self.schema.empty_table()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.file, self.schema)
        start = 0
        while len(table) - start >= ROW_GROUP or (final and start < len(table)):
            # contiguous columns: a row group's pages do not depend on the chunks that made it
            self.writer.write_table(table.slice(start, ROW_GROUP).combine_chunks())
            start += ROW_GROUP
        rest = table.slice(start)
        self.pending, self.pending_rows = ([rest] if len(rest) else []), len(rest)


def _nullable(dtype: Any) -> str | None:
    """The nullable pandas type of an integer or boolean column (None: the column keeps its type)."""
    kind = getattr(dtype, "kind", "")
    if kind == "b":
        return "boolean"
    if kind and kind in "iu":
        return f"{'U' if kind == 'u' else ''}Int{dtype.itemsize * 8}"
    return None
