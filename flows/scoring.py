"""The scoring flow: one batch through `domains.common.scoring` (gate, drift, champion, predictions), its
verdicts and counts published as artifacts. A batch the gate or the drift check blocks fails the run
with the reason, and is not retried: the same batch would fail the same way."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from domains.common import paths
from domains.common.contract import ScoreOptions
from domains.common.errors import PipelineError
from flows.pipeline import StageFailed, _artifact


def inbox(domain: str) -> Path:
    """Where a scheduled scoring run looks for its batch by default, relative to the project root."""
    return paths.inbox_dir(Path(), domain)


@task(task_run_name="score@{domain}")
def score_batch(domain: str, input: str, source: str | None, out: str | None, model: str, history: str | None) -> dict:
    from domains.common.scoring import ScoreRequest, score

    root = paths.project_root()
    request = ScoreRequest(
        domain,
        root / input,
        source,
        root / out if out else None,
        model,
        options=ScoreOptions(history=root / history if history else None),
    )
    try:
        return score(root, request)
    except PipelineError as err:
        raise StageFailed(str(err)) from None


@task(task_run_name="publish-scores@{domain}")
def publish(domain: str, manifest: dict) -> None:
    gate, drift, counts = manifest["gate"], manifest["drift"], manifest["counts"]
    _artifact(
        create_markdown_artifact,
        key=f"{domain}-scoring-verdicts",
        description=f"{domain} scoring: gate and drift",
        markdown="\n".join(
            [
                f"# Scoring: {domain}",
                "",
                f"model **{manifest['model']['version']}** ({manifest['model']['name']}, "
                f"DVC `{manifest['model']['dvc_md5']}`), input sha256 `{manifest['input_sha256'][:16]}...`",
                "",
                f"gate: **{gate['verdict']}**",
                *(f"- {w}" for w in gate["warnings"]),
                "",
                f"drift: **{drift['verdict']}**",
                *(f"- {r}" for r in drift["reasons"]),
            ]
        ),
    )
    _artifact(
        create_table_artifact,
        key=f"{domain}-scoring-counts",
        description=f"{domain} scoring counts",
        table=[
            {
                "rows_in": counts["rows_in"],
                "scored": counts["scored"],
                "quarantined": counts["quarantined"],
                "seconds": manifest["timings"]["total_seconds"],
            }
        ],
    )
    report = Path(manifest["out"]) / "report.html"
    _artifact(
        create_link_artifact,
        key=f"{domain}-scoring-report",
        link=report.resolve().as_uri(),
        link_text=f"{domain} scoring report",
        description=str(report),
    )


@flow(name="scoring", flow_run_name="{domain}-scoring")
def scoring_flow(
    domain: str,
    input: str | None = None,
    source: str | None = None,
    out: str | None = None,
    model: str = "champion",
    history: str | None = None,
) -> dict:
    """Score `input` (default: data/<domain>/inbox) with the domain's champion; fails on a blocked batch."""
    manifest = score_batch(domain, input or str(inbox(domain)), source, out, model, history)
    publish(domain, manifest)
    get_run_logger().info(
        "%s: scored %s rows with %s into %s",
        domain,
        manifest["counts"]["scored"],
        manifest["model"]["version"],
        manifest["out"],
    )
    return {k: manifest[k] for k in ("out", "counts")}
