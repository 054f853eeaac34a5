"""Render a domain's report: one self-contained HTML file (figures inlined) and a Markdown file.

It joins the gate verdict, metrics of every model against thresholds and the champion, the
promote/keep decision, the domain's figures and tables, and provenance.
"""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from domains.common import paths, provenance
from domains.common.contract import DomainSpec
from domains.common.params import DomainParams

MAX_METRIC_COLUMNS = 8
WARNING = "Warning: "  # a note that starts so is also shown in the summary, next to the decision
HTML_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ title }} report</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#1f2328}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}.pass{color:#1a7f37}.warn{color:#9a6700}.block,.fail{color:#cf222e}
.badge{font-weight:bold;text-transform:uppercase}img{max-width:100%}figure{margin:1em 0}
pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:12px}
</style></head><body>
<h1>{{ title }}</h1>
<p>Generated {{ generated }} &middot; commit <code>{{ prov.git_commit }}</code> &middot; {{ prov.device }}</p>
<h2>Summary</h2>
<ul>
<li>Data-quality gate: <span class="badge {{ gate.verdict }}">{{ gate.verdict }}</span>
 ({{ gate.rows_in }} rows in, {{ gate.rows_passed }} passed, {{ gate.rows_quarantined }} quarantined, {{ failed_checks|length }} failed check(s))</li>
<li>Decision for <b>{{ decision.candidate }}</b>: <span class="badge {{ 'pass' if decision.decision == 'promote' else 'warn' }}">{{ decision.decision }}</span> &mdash; {{ decision.reason }}</li>
{% for w in warnings %}<li class="warn"><b>{{ w }}</b></li>{% endfor %}
</ul>
<h2>Metrics (test split, all models on the same rows)</h2>
{{ metrics_html }}
<p>Primary metric: <b>{{ decision.primary_metric }}</b>. Thresholds apply to the candidate <b>{{ decision.candidate }}</b>.
{% if decision.test_split %}Brackets: 95 % bootstrap interval over the {{ decision.test_split.units }} test units ({{ decision.test_split.rows }} rows).{% endif %}</p>
{% if findings %}<ul>{% for line in findings %}<li>{{ line }}</li>{% endfor %}</ul>{% endif %}
{% if decision.thresholds %}<table><tr><th>threshold</th><th>bound</th><th>value</th><th>result</th></tr>
{% for t in decision.thresholds %}<tr><td>{{ t.metric }}{% if t.baseline %} beats {{ t.baseline }}{% endif %}</td><td>{{ (('>' if t.bound == 'min' else '<') if t.baseline else ('≥' if t.bound == 'min' else '≤')) }} {{ '%.4g'|format(t.threshold) }}</td>
<td>{{ '%.4f'|format(t.value) if t.value is not none else 'missing' }}</td><td class="{{ 'pass' if t.passed else 'fail' }}">{{ 'pass' if t.passed else 'FAIL' }}</td></tr>{% endfor %}</table>{% endif %}
{% for note in notes %}<p>{{ note }}</p>{% endfor %}
<h2>Figures</h2>
{% for f in figures %}<figure><img alt="{{ f.title }}" src="data:image/png;base64,{{ f.data }}"><figcaption><b>{{ f.title }}</b> {{ f.caption }}</figcaption></figure>{% endfor %}
{% for name, table in tables.items() %}<h3>{{ name }}</h3>{{ table }}{% endfor %}
<h2>Data-quality gate</h2>
<p>Full results: <a href="../validate/gate.html">gate.html</a> &middot; Great Expectations Data Docs:
<a href="../validate/gx_docs/index.html">gx_docs/index.html</a> (next to this report in data/&lt;domain&gt;/)</p>
{% if gate.reasons %}<ul>{% for r in gate.reasons %}<li class="block">{{ r }}</li>{% endfor %}</ul>{% endif %}
<table><tr><th>check</th><th>tool</th><th>severity</th><th>result</th><th>failing rows</th><th>detail</th></tr>
{% for c in gate.checks %}<tr><td>{{ c.name }}</td><td>{{ c.tool }}</td><td>{{ c.severity }}</td>
<td class="{{ 'pass' if c.passed else ('warn' if c.severity != 'block' else 'fail') }}">{{ 'pass' if c.passed else 'FAIL' }}</td>
<td>{{ c.failing }}</td><td style="text-align:left">{{ c.detail }}</td></tr>{% endfor %}</table>
<h2>Provenance</h2>
<table><tr><th>stage</th><th>seconds</th><th>outputs (dvc.lock md5)</th></tr>
{% for stage, secs in prov.stage_seconds.items() %}<tr><td>{{ stage }}</td><td>{{ '%.1f'|format(secs) }}</td>
<td style="text-align:left"><code>{{ prov.dvc_lock.get(stage, {}) }}</code></td></tr>{% endfor %}</table>
<table><tr><th>package</th><th>version</th></tr>{% for p, v in prov.packages.items() %}<tr><td>{{ p }}</td><td>{{ v }}</td></tr>{% endfor %}
<tr><td>python</td><td>{{ prov.python }}</td></tr></table>
<h3>Params</h3><pre>{{ params_json }}</pre>
</body></html>
"""


def _metrics_frame(metrics: dict[str, dict[str, float]], decision: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(metrics).T
    frame.index = [f"{m} (candidate)" if m == decision["candidate"] else m for m in frame.index]
    champion = decision.get("champion")
    if champion:
        frame.loc[f"champion v{champion['version']} ({champion.get('model', '?')})"] = pd.Series(champion["metrics"])
    return frame


def _with_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """Each metric with a bootstrap interval as one cell, 'value [low, high]'; other numbers to 4 decimals."""
    shown = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        if column.endswith(("_ci_low", "_ci_high")):
            continue
        low, high = frame.get(f"{column}_ci_low"), frame.get(f"{column}_ci_high")
        cells = []
        for i, value in enumerate(frame[column]):
            if not isinstance(value, (int, float)) or pd.isna(value):
                cells.append("" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value))
            elif low is not None and pd.notna(low.iloc[i]) and pd.notna(high.iloc[i]):
                cells.append(f"{value:.4f} [{low.iloc[i]:.4f}, {high.iloc[i]:.4f}]")
            else:
                cells.append(f"{value:.4f}")
        shown[column] = cells
    return shown


def _warnings(notes: list[str]) -> list[str]:
    """A domain's notes that start with WARNING are also shown next to the decision (e.g. a model near chance)."""
    return [n for n in notes if n.startswith(WARNING)]


def _readable(frame: pd.DataFrame) -> pd.DataFrame:
    """Models as rows; with many metrics, metrics as rows instead, so the table fits the page."""
    return frame.T if frame.shape[1] > MAX_METRIC_COLUMNS else frame


def _table_html(frame: pd.DataFrame) -> str:
    """A domain table: numbers right-aligned (the page's default), text left-aligned (prose reads from the left)."""
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    return (
        frame.style.hide(axis="index")
        .format(escape="html", na_rep="")
        .format(lambda x: f"{x:.4g}", subset=floats, na_rep="")
        .set_properties(subset=text, **{"text-align": "left"})
        .to_html()
    )


def _findings(decision: dict[str, Any]) -> list[str]:
    """The comparison with the champion, the worst slice and protected-attribute gaps, one line each."""
    lines = []
    comparison = decision.get("comparison")
    if comparison and not comparison["paired"]:
        lines.append(f"Champion comparison on point estimates only: {comparison['why']}")
    slices = decision.get("slices") or {}
    worst = slices.get("worst")
    if worst:
        lines.append(
            f"Worst slice for {worst['model']}: {worst['slice']} = {worst['group']}, {worst['metric']} "
            f"{worst['value']:.4f} [{worst['ci_low']:.4f}, {worst['ci_high']:.4f}] ({worst['units']} units)"
        )
    elif "slices" in decision:
        lines.append("No slice group had enough units to judge (evaluate.min_slice_size)")
    for name, why in slices.get("skipped", {}).items():
        lines.append(f"Slice {name} not cut: {why}")
    for gap in slices.get("protected_gaps", []):
        lines.append(
            f"Protected attribute {gap['slice']}: best group {gap['best']} ({gap['best_value']:.4f}), worst "
            f"{gap['worst']} ({gap['worst_value']:.4f}), gap {gap['gap']:.4f}"
        )
    return lines


def write_report(spec: DomainSpec, params: DomainParams, root: Path, out: Path) -> None:
    evaluate_dir = paths.stage_dir(root, spec.name, "evaluate")
    gate = json.loads(paths.gate_file(root, spec.name).read_text())
    metrics = json.loads(paths.metrics_file(root, spec.name).read_text())
    decision = json.loads(paths.decision_file(root, spec.name).read_text())
    notes = json.loads((evaluate_dir / "notes.json").read_text())
    figures = json.loads((evaluate_dir / "figures" / "figures.json").read_text())
    # Titles from the file names: "error_by_user_activity.csv" -> "Error by user activity".
    tables = {
        p.stem.replace("_", " ").capitalize(): pd.read_csv(p) for p in sorted((evaluate_dir / "tables").glob("*.csv"))
    }
    prov = provenance.collect(root, spec.name, params.model_dump(mode="json"))
    (out / "provenance.json").write_text(json.dumps(prov, indent=2))

    frame = _readable(_with_intervals(_metrics_frame(metrics, decision)))
    failed = [c for c in gate["checks"] if not c["passed"]]
    gate["checks"] = failed + [c for c in gate["checks"] if c["passed"]]  # failures first
    html = (
        jinja2.Environment(autoescape=True)
        .from_string(HTML_TEMPLATE)
        .render(
            title=spec.title,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            gate=gate,
            failed_checks=failed,
            decision=decision,
            notes=notes,
            prov=prov,
            warnings=_warnings(notes),
            metrics_html=jinja2.utils.markupsafe.Markup(frame.to_html(na_rep="")),
            findings=_findings(decision),
            tables={k: jinja2.utils.markupsafe.Markup(_table_html(v)) for k, v in tables.items()},
            figures=[
                {**f, "data": base64.b64encode((evaluate_dir / "figures" / f["file"]).read_bytes()).decode()}
                for f in figures
            ],
            params_json=json.dumps(prov["params"], indent=2),
        )
    )
    (out / "report.html").write_text(html)

    (out / "figures").mkdir(exist_ok=True)
    for f in figures:
        shutil.copy(evaluate_dir / "figures" / f["file"], out / "figures" / f["file"])
    (out / "report.md").write_text(_markdown(spec, gate, failed, decision, frame, notes, figures, tables, prov))


def _markdown(
    spec: DomainSpec,
    gate: dict,
    failed: list,
    decision: dict,
    frame: pd.DataFrame,
    notes: list[str],
    figures: list[dict],
    tables: dict[str, pd.DataFrame],
    prov: dict,
) -> str:
    lines = [
        f"# {spec.title}",
        "",
        f"- Data-quality gate: **{gate['verdict'].upper()}** ({gate['rows_in']} rows in, {gate['rows_passed']} passed, "
        f"{gate['rows_quarantined']} quarantined, {len(failed)} failed check(s))",
        f"- Decision for **{decision['candidate']}**: **{decision['decision']}**: {decision['reason']}",
        *[f"- **{w}**" for w in _warnings(notes)],
        f"- Commit `{prov['git_commit']}`, {prov['device']}",
        "",
        "## Metrics (test split)",
        "",
        frame.to_markdown(),
        "",
        *(f"- {line}" for line in _findings(decision)),
        "",
    ]
    for t in decision["thresholds"]:
        value = "missing" if t["value"] is None else f"{t['value']:.4f}"
        beats = f" beats {t['baseline']}" if t.get("baseline") else ""
        sign = (">" if t["bound"] == "min" else "<") if beats else (">=" if t["bound"] == "min" else "<=")
        lines.append(
            f"- threshold {t['metric']}{beats} {sign} {t['threshold']:.4g}: {value} {'pass' if t['passed'] else 'FAIL'}"
        )
    lines += ["", *notes, "", "## Figures", ""]
    lines += [f"![{f['title']}](figures/{f['file']})  \n*{f['title']}* {f['caption']}\n" for f in figures]
    for name, table in tables.items():
        lines += [f"### {name}", "", table.to_markdown(index=False), ""]
    lines += ["## Data-quality gate", ""]
    lines += [f"- FAILED ({c['severity']}) {c['name']} [{c['tool']}]: {c['detail']}" for c in failed] or [
        "- all checks passed"
    ]
    lines += ["", "## Provenance", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {s} | {secs:.1f} |" for s, secs in prov["stage_seconds"].items()]
    lines += ["", "Packages: " + ", ".join(f"{k} {v}" for k, v in prov["packages"].items()), ""]
    return "\n".join(lines)
