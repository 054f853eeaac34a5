"""Prefect flows: each task is one DVC stage, so a flow run and `dvc repro` are the same
computation, cached the same, and leave dvc.lock true."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from domains.common import paths
from domains.common.dvc import dvc


class StageFailed(Exception):
    """A stage exited non-zero; the message is the stage's own one-line reason(s)."""


def _failure_reason(domain: str, stage: str, output: str, root: Path) -> str:
    gate_file = paths.stage_dir(root, domain, "validate") / "gate.json"
    if stage == "validate" and gate_file.is_file():
        gate = json.loads(gate_file.read_text())
        if gate["verdict"] == "block":
            return f"gate blocked {domain}: " + " | ".join(gate["reasons"])
    errors = [line.strip() for line in output.splitlines() if line.startswith("error:")]
    return errors[0] if errors else (output.strip().splitlines() or ["no output"])[-1]


@task(task_run_name="{stage}@{domain}")
def run_stage(domain: str, stage: str, force: bool = False) -> str:
    """`dvc repro --single-item <stage>@<domain>`: runs the stage only if its deps or params changed."""
    root = paths.project_root()
    proc = dvc(root, "repro", "--single-item", f"{stage}@{domain}", *(["--force"] if force else []), capture=True)
    logger = get_run_logger()
    for line in (proc.stdout + proc.stderr).strip().splitlines()[-20:]:
        logger.info(line)
    if proc.returncode != 0:
        raise StageFailed(_failure_reason(domain, stage, proc.stdout + proc.stderr, root))
    return "ran" if "Running stage" in proc.stdout else "cached"


def publish_gate(domain: str, root: Path) -> None:
    gate_file = paths.stage_dir(root, domain, "validate") / "gate.json"
    if not gate_file.is_file():
        return
    gate = json.loads(gate_file.read_text())
    failed = [c for c in gate["checks"] if not c["passed"]]
    lines = [f"# Data-quality gate: {domain}: **{gate['verdict'].upper()}**", "",
             f"{gate['rows_in']} rows in, {gate['rows_passed']} passed, {gate['rows_quarantined']} quarantined.", ""]
    lines += [f"- **{c['severity']}** `{c['name']}` ({c['tool']}): {c['detail']}" for c in failed] or ["All checks passed."]
    create_markdown_artifact(key=f"{domain}-gate", markdown="\n".join(lines), description=f"{domain} gate verdict")


def publish_results(domain: str, root: Path) -> None:
    evaluate_dir = paths.stage_dir(root, domain, "evaluate")
    metrics = json.loads((evaluate_dir / "metrics.json").read_text())
    decision = json.loads((evaluate_dir / "decision.json").read_text())
    table = [{"model": model, **{k: round(v, 4) for k, v in values.items()}} for model, values in metrics.items()]
    create_table_artifact(key=f"{domain}-metrics", table=table,
                          description=f"{domain}: {decision['decision']} {decision['candidate']}: {decision['reason']}")
    report = paths.report_html(root, domain)
    create_link_artifact(key=f"{domain}-report", link=report.resolve().as_uri(), link_text=f"{domain} report",
                         description=str(report))


@flow(name="domain-pipeline", flow_run_name="{domain}")
def domain_flow(domain: str, force: bool = False) -> dict[str, str]:
    """acquire -> validate (gate) -> prepare -> train -> evaluate -> report, each through DVC."""
    root = paths.project_root()
    outcomes: dict[str, str] = {}
    for stage in paths.STAGES:
        try:
            outcomes[stage] = run_stage(domain, stage, force)
        finally:
            if stage == "validate":
                publish_gate(domain, root)  # the verdict is published whether the gate passed or not
    publish_results(domain, root)
    return outcomes


@flow(name="all-domains")
def all_domains_flow(domains: list[str] | None = None, force: bool = False) -> dict[str, dict[str, str]]:
    """Every configured domain's pipeline; one domain failing its gate does not stop the others."""
    from domains.common.registry import configured_domains

    chosen = domains or configured_domains(paths.project_root())
    states = {name: domain_flow(name, force, return_state=True) for name in chosen}
    failed = {name: state.message for name, state in states.items() if state.is_failed()}
    if failed:
        raise StageFailed("; ".join(f"{name}: {message}" for name, message in failed.items()))
    return {name: state.result() for name, state in states.items()}
