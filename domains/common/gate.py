"""The data-quality gate: pandera (schema contract) and Great Expectations (declarative,
statistical expectations) behind one result format.

Severities, per check (params override the domain's defaults; anything unnamed blocks):
- block: the run stops; one line per failed check.
- warn: recorded in the gate result and the report (and counted against `max_warnings`).
- info: recorded, with its count, and nothing else: a fact about the data, not a fault.
- quarantine: failing rows are moved to a quarantine table with the reason and the run
  continues, unless more than `max_quarantine_fraction` of the rows are quarantined.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from domains.common import paths
from domains.common.errors import ParamsError
from domains.common.params import GateParams, Severity

Tool = Literal["pandera", "great_expectations"]
Verdict = Literal["pass", "warn", "block"]
MAX_EXAMPLES = 5
GX_DOCS = "gx_docs"  # folder of the GX Data Docs site, next to gate.json

# pandera's names for its built-in column checks, shortened to stable check names.
_PANDERA_BUILTIN = {
    "column_in_dataframe": "present",
    "field_uniqueness": "unique",
    "not_nullable": "not_null",
    "dtype": "dtype",
    "coerce_dtype": "dtype",
}


@dataclass(frozen=True)
class GateSuite:
    """What a domain hands the gate: its pandera schema, its GX expectations and default severities.

    Name GX expectations through `meta={"check": "<name>"}`; pandera checks through `name=`.
    A table-level pandera check that returns one boolean per row is row-level (it can quarantine).
    With `id_column`, a row-level failure's examples name the rows (e.g. the file), not just the values.
    """

    schema: pa.DataFrameSchema
    expectations: Sequence[Any] = ()
    severities: dict[str, Severity] = field(default_factory=dict)
    id_column: str | None = None


@dataclass
class CheckResult:
    name: str
    tool: Tool
    severity: Severity
    passed: bool
    failing: int
    total: int
    detail: str
    examples: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one-line reason printed when this check fails."""
        shown = f"; e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{self.name} [{self.tool}]: {self.detail}{shown}"


@dataclass
class GateResult:
    verdict: Verdict
    rows_in: int
    rows_passed: int
    rows_quarantined: int
    checks: list[CheckResult]
    reasons: list[str]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and c.severity == "warn"]

    @property
    def facts(self) -> list[CheckResult]:
        """Failed `info` checks: what the data is like (a long tail, repeats), reported and nothing else."""
        return [c for c in self.checks if not c.passed and c.severity == "info"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_names(suite: GateSuite) -> list[str]:
    """Every check name the suite can report, for validating severity overrides in params."""
    return sorted(set(_pandera_check_names(suite.schema)) | {_gx_name(e) for e in suite.expectations})


def _pandera_check_names(schema: pa.DataFrameSchema) -> list[str]:
    """The checks a schema declares, under the names failures are reported with."""
    names = []
    for column_name, column in schema.columns.items():
        names += [f"{column_name}:present", f"{column_name}:dtype"]
        names += [f"{column_name}:not_null"] if not column.nullable else []
        names += [f"{column_name}:unique"] if column.unique else []
        names += [f"{column_name}:{_short(check.name)}" for check in column.checks]
    names += [_short(check.name) for check in schema.checks]
    return names


def resolve_severities(suite: GateSuite, params: GateParams) -> dict[str, Severity]:
    known = set(check_names(suite))
    unknown = sorted(set(params.severity) - known)
    if unknown:
        raise ParamsError(f"gate.severity: unknown check(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return {**suite.severities, **params.severity}


def run_gate(
    table: pd.DataFrame, suite: GateSuite, params: GateParams, docs_dir: Path | None = None
) -> tuple[GateResult, pd.DataFrame, pd.DataFrame]:
    """Validate `table`; return the result, the rows that passed (coerced to the schema) and the quarantined rows.

    The input frame is never modified. With `docs_dir`, GX also writes its Data Docs site there.
    """
    severities = resolve_severities(suite, params)
    total = len(table)
    pandera_checks, failing_rows = run_pandera(table, suite.schema, severities, suite.id_column)

    quarantine_reasons: dict[Any, list[str]] = {}
    for check in pandera_checks:
        if not check.passed and check.severity == "quarantine":
            rows = failing_rows.get(check.name)
            if rows is None:  # a table-level failure has no rows to move aside
                check.severity = "block"
                check.detail += " (not row-level, so it cannot be quarantined)"
                continue
            for row in rows:
                quarantine_reasons.setdefault(row, []).append(check.name)

    quarantined_index = pd.Index(list(quarantine_reasons))
    quarantine = table.loc[quarantined_index].copy()
    quarantine["quarantine_reason"] = ["; ".join(quarantine_reasons[i]) for i in quarantined_index]
    kept = table.drop(index=quarantined_index)

    checks = list(pandera_checks)
    blocked_by_schema = any(not c.passed and c.severity == "block" for c in checks)
    if not blocked_by_schema:
        # Second pass on the kept rows: returns the frame coerced to the schema's types.
        try:
            kept = suite.schema.validate(kept, lazy=True)
        except SchemaErrors as err:
            extra, _ = _pandera_results(err.failure_cases, suite.schema, kept, severities, suite.id_column)
            checks += [c for c in extra if not any(c.name == p.name for p in pandera_checks)]
            if all(c.severity in ("warn", "info") for c in extra if not c.passed):
                kept = suite.schema.coerce_dtype(kept)  # rows that only warn stay, and GX still runs
            else:
                blocked_by_schema = True
    if not blocked_by_schema:
        checks += run_great_expectations(kept, suite.expectations, severities, docs_dir)

    reasons = [c.line() for c in checks if not c.passed and c.severity == "block"]
    held = quarantine_reason(len(quarantine), total, params.max_quarantine_fraction)
    if held:
        reasons.append(held)
    if total == 0:
        reasons.append("table: no rows to validate")
    verdict: Verdict = (
        "block" if reasons else ("warn" if any(not c.passed and c.severity != "info" for c in checks) else "pass")
    )
    result = GateResult(verdict, total, 0 if reasons else len(kept), len(quarantine), checks, reasons)
    return result, kept, quarantine


def quarantine_reason(quarantined: int, total: int, limit: float) -> str | None:
    """The reason a batch blocks when too large a share of its rows is quarantined; None when it is not."""
    share = quarantined / total if total else 0.0
    if share <= limit:
        return None
    return (
        f"quarantine: {quarantined} of {total} rows ({share:.2%}) failed quarantine checks, "
        f"more than gate.max_quarantine_fraction={limit:.2%}"
    )


def run_pandera(
    table: pd.DataFrame, schema: pa.DataFrameSchema, severities: dict[str, Severity], id_column: str | None = None
) -> tuple[list[CheckResult], dict[str, list[Any]]]:
    """The row-level half of the gate: every check's result, and the failing row labels per check."""
    failed: list[CheckResult] = []
    rows: dict[str, list[Any]] = {}
    try:
        schema.validate(table, lazy=True)
    except SchemaErrors as err:
        failed, rows = _pandera_results(err.failure_cases, schema, table, severities, id_column)
    failed_names = {c.name for c in failed}
    passed = [
        CheckResult(name, "pandera", severities.get(name, "block"), True, 0, len(table), "passed")
        for name in _pandera_check_names(schema)
        if name not in failed_names
    ]
    return failed + passed, rows


def _pandera_results(
    cases: pd.DataFrame,
    schema: pa.DataFrameSchema,
    table: pd.DataFrame,
    severities: dict[str, Severity],
    id_column: str | None = None,
) -> tuple[list[CheckResult], dict[str, list[Any]]]:
    results: list[CheckResult] = []
    rows: dict[str, list[Any]] = {}
    total = len(table)
    cases = cases.assign(
        name=[
            _pandera_name(schema, ctx, col, chk, num, fc)
            for ctx, col, chk, num, fc in zip(
                cases["schema_context"], cases["column"], cases["check"], cases["check_number"], cases["failure_case"]
            )
        ]
    )
    for name, group in cases.groupby("name", sort=True):
        index = group["index"].dropna()
        row_level = len(index) == len(group) and len(index) > 0
        table_level = (group["schema_context"] == "DataFrameSchema").all()
        if table_level:  # a row-wise table check fails once per column: one case per row is enough
            group = group.drop_duplicates("index")
            index = group["index"].dropna()
        failing = int(index.nunique()) if row_level else len(group)
        what = str(group["check"].iloc[0])
        if row_level:
            detail = f"{failing} of {total} rows fail {what}"
            rows[str(name)] = list(pd.unique(index))
        elif what == "column_in_dataframe":
            detail = "required column is missing"
        else:
            detail = f"fails {what}"
        examples = [_fmt(v) for v in group["failure_case"].head(MAX_EXAMPLES)] if what != "column_in_dataframe" else []
        if row_level and id_column in table.columns:
            named = [_fmt(table.at[i, id_column]) for i in group["index"].head(MAX_EXAMPLES)]
            examples = named if table_level else [f"{n} ({v})" for n, v in zip(named, examples)]
        severity = severities.get(str(name), "block")
        results.append(CheckResult(str(name), "pandera", severity, False, failing, total, detail, examples))
    return results, rows


def _pandera_name(
    schema: pa.DataFrameSchema, context: Any, column: Any, check: Any, number: Any, failure_case: Any
) -> str:
    """The stable name of a failed check: `<column>:<check name>`, or the table check's name."""
    short = _short(str(check))
    if short == "present":
        return f"{failure_case}:present"
    key = _column_key(schema, column) if context != "DataFrameSchema" else None
    declared = short
    if pd.notna(number):
        checks = schema.columns[key].checks if key is not None else schema.checks
        if int(number) < len(checks):
            declared = _short(checks[int(number)].name)
    return f"{key}:{declared}" if key is not None else declared


def _column_key(schema: pa.DataFrameSchema, column: Any) -> str | None:
    """The schema key a failing column belongs to: its own name, or the regex that matched it."""
    if not isinstance(column, str):
        return None
    if column in schema.columns:
        return column
    for key, spec in schema.columns.items():
        if spec.regex and re.fullmatch(key, column):
            return key
    return None


def _short(check_name: str | None) -> str:
    base = re.sub(r"\(.*\)$", "", str(check_name))
    return _PANDERA_BUILTIN.get(base, base)


def _gx_name(expectation: Any) -> str:
    meta = getattr(expectation, "meta", None) or {}
    if "check" in meta:
        return str(meta["check"])
    column = getattr(expectation, "column", None)
    return f"{column}:{expectation.expectation_type}" if column else expectation.expectation_type


def run_great_expectations(
    table: pd.DataFrame, expectations: Sequence[Any], severities: dict[str, Severity], docs_dir: Path | None
) -> list[CheckResult]:
    """The batch-level half of the gate: one GX checkpoint run (Data Docs in docs_dir when given)."""
    if not expectations:
        return []
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # offline: no usage statistics
    import great_expectations as gx  # heavy import (~5 s): only when a suite has expectations
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    actions: list[gx.checkpoint.ValidationAction] = []
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="gate",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            },
        )
        actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["gate"])]
    batch_definition = (
        context.data_sources.add_pandas("gate").add_dataframe_asset("table").add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="gate", expectations=[e.copy() for e in expectations]))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="gate", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(name="gate", validation_definitions=[validation], actions=actions, result_format="SUMMARY")
    )
    # The same table gives the same Data Docs bytes: a fixed run id, then the pages' stamps removed.
    run_id = RunIdentifier(run_name="gate", run_time=_GX_RUN_TIME)
    outcome = next(iter(checkpoint.run(batch_parameters={"dataframe": table}, run_id=run_id).run_results.values()))
    if docs_dir is not None:
        _strip_volatile(docs_dir)

    results = []
    for r in outcome.results:
        config = r.expectation_config
        assert config is not None  # every result of a suite run names its expectation
        name = str(config.meta.get("check")) if config.meta and "check" in config.meta else _gx_name(config)
        kwargs = {
            k: v
            for k, v in config.kwargs.items()
            if k not in ("column", "batch_id", "row_condition", "condition_parser") and v is not None
        }
        where = _row_condition(config.kwargs.get("row_condition"))
        described = f"{config.type}({', '.join(f'{k}={v}' for k, v in kwargs.items())}){where}"
        info = r.result or {}
        if r.exception_info and r.exception_info.get("raised_exception"):
            detail = f"could not be evaluated: {str(r.exception_info.get('exception_message', '')).splitlines()[0]}"
            failing, examples = len(table), []
        elif info.get("missing_count"):  # a set expectation: which expected values are absent
            failing = int(info["missing_count"])
            detail = f"{failing} expected value(s) absent: {config.type}({', '.join(f'{k}={v}' for k, v in kwargs.items())}){where}"
            examples = [_fmt(v) for v in (info.get("partial_missing_list") or [])[:MAX_EXAMPLES]]
        elif "unexpected_count" in info:
            failing = int(info["unexpected_count"] or 0)
            detail = f"{failing} of {len(table)} rows fail {described}"
            examples = [_fmt(v) for v in (info.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]]
        else:
            failing = 0 if r.success else len(table)
            detail = f"observed {_fmt(info.get('observed_value'))}, expected {described}"
            examples = []
        severity = severities.get(name, "block")
        if severity == "quarantine":
            severity = "block"  # GX results here are not row-indexed; quarantine is pandera's job
        results.append(
            CheckResult(
                name,
                "great_expectations",
                severity,
                bool(r.success),
                failing if not r.success else 0,
                len(table),
                detail,
                examples,
            )
        )
    return results


_GX_RUN_TIME = datetime(2000, 1, 1, tzinfo=UTC)  # GX's default is the wall clock: a fixed one keeps pages identical
_VOLATILE = re.compile(r"(\d{8}T\d{6}\.\d+Z)|([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def _strip_volatile(docs_dir: Path) -> None:
    """GX stamps its pages with build and load times and random element ids: times go, ids are numbered in order."""
    fixed = _GX_RUN_TIME.strftime("%Y%m%dT%H%M%S.%fZ")
    for page in docs_dir.rglob("*.html"):
        text, ids = page.read_text(encoding="utf-8"), dict[str, str]()

        def stable(match: re.Match) -> str:
            if match.group(1):
                return match.group(1) if match.group(1) == fixed else "-"
            return ids.setdefault(match.group(2), f"id{len(ids)}")

        if (clean := _VOLATILE.sub(stable, text)) != text:
            page.write_text(clean, encoding="utf-8")


def _row_condition(condition: Any) -> str:
    """' where <condition>' for an expectation restricted to some rows (GX 1.x stores it as a dict)."""
    if not condition:
        return ""
    text = condition.get("pass_through_filter", condition) if isinstance(condition, dict) else condition
    return f" where {text}"


_ONE_LINE = str.maketrans(
    {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
)  # a value (a text, a field) never breaks a reason's line


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value).translate(_ONE_LINE)
    return text if len(text) <= 40 else text[:37] + "..."


def write_gate_result(result: GateResult, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / paths.GATE_FILE).write_text(json.dumps(result.to_json(), indent=2, default=str))
    docs = out_dir / GX_DOCS / "index.html"
    (out_dir / "gate.html").write_text(render_gate_html(result, f"{GX_DOCS}/index.html" if docs.is_file() else None))


def render_gate_html(result: GateResult, gx_docs_link: str | None = None) -> str:
    colours = {"pass": "#1a7f37", "warn": "#9a6700", "block": "#cf222e", "info": "#57606a"}
    rows = "".join(
        f"<tr><td>{html.escape(c.name)}</td><td>{c.tool}</td><td>{c.severity}</td>"
        f"<td style='color:{colours['pass'] if c.passed else colours[{'warn': 'warn', 'info': 'info'}.get(c.severity, 'block')]}'>"
        f"{'pass' if c.passed else 'FAIL'}</td><td>{c.failing}</td><td>{html.escape(c.detail)}</td>"
        f"<td>{html.escape(', '.join(c.examples))}</td></tr>"
        for c in result.checks
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>Data-quality gate</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "table{border-collapse:collapse}</style>"
        f"<h1>Data-quality gate: <span style='color:{colours[result.verdict]}'>{result.verdict.upper()}</span></h1>"
        f"<p>{result.rows_in} rows in, {result.rows_passed} passed, {result.rows_quarantined} quarantined.</p>"
        + "".join(f"<p style='color:{colours['block']}'>{html.escape(r)}</p>" for r in result.reasons)
        + (f"<p>Great Expectations Data Docs: <a href='{gx_docs_link}'>{gx_docs_link}</a></p>" if gx_docs_link else "")
        + "<table><tr><th>check</th><th>tool</th><th>severity</th><th>result</th><th>failing</th>"
        f"<th>detail</th><th>examples</th></tr>{rows}</table>"
    )
