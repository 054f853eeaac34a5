"""Deployments as code: one per domain and one over all domains, each on the nightly schedule of
flows/config.py. Serve them from this process (`aiflow serve`) or register them on a work pool
for `prefect worker start` (`aiflow deploy --pool NAME`)."""

from __future__ import annotations

from pathlib import Path

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from domains.common import paths
from domains.common.registry import configured_domains, load_spec
from flows.config import SETTINGS
from flows.pipeline import all_domains_flow, domain_flow, ensure_concurrency_limits
from flows.scoring import inbox, scoring_flow

# A deployment's own runs never overlap: a late run waits for the previous one instead.
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def deployment_specs(root: Path) -> list[dict]:
    """Name, flow entrypoint, parameters and tags of every deployment (shared by serve and deploy)."""
    schedule = Cron(SETTINGS.cron, timezone=SETTINGS.timezone)
    specs = [
        {
            "flow": domain_flow,
            "entrypoint": "flows/pipeline.py:domain_flow",
            "name": f"{domain}-nightly",
            "parameters": {"domain": domain, "force": False, "promote": True, "push": True},
            "tags": [*SETTINGS.tags, domain, "nightly"],
            "schedules": [schedule],
            "description": f"Nightly {domain} pipeline: gate, train, evaluate, report, promote, push.",
        }
        for domain in configured_domains(root)
    ]
    specs.append(
        {
            "flow": all_domains_flow,
            "entrypoint": "flows/pipeline.py:all_domains_flow",
            "name": "all-domains-nightly",
            "parameters": {"domains": None, "force": False, "promote": True, "push": True},
            "tags": [*SETTINGS.tags, "all-domains", "nightly"],
            "schedules": [schedule],
            "description": "Every domain's pipeline, domains concurrently.",
        }
    )
    scoring = Cron(SETTINGS.scoring_cron, timezone=SETTINGS.timezone)
    specs += [
        {
            "flow": scoring_flow,
            "entrypoint": "flows/scoring.py:scoring_flow",
            "name": f"{domain}-scoring",
            "parameters": {"domain": domain, "input": str(inbox(domain)), "model": "champion"},
            "tags": [*SETTINGS.tags, domain, "scoring"],
            "schedules": [scoring],
            "description": f"Score {inbox(domain)} with the {domain} champion: gate, drift, predictions.",
        }
        for domain in configured_domains(root)
        if load_spec(domain).scoring is not None
    ]
    return specs


def serve_deployments() -> None:
    """Register every deployment with its schedule and run their flow runs from this process."""
    root = paths.project_root()
    ensure_concurrency_limits(configured_domains(root))
    deployments = [
        spec["flow"].to_deployment(
            name=spec["name"],
            parameters=spec["parameters"],
            tags=spec["tags"],
            schedules=spec["schedules"],
            description=spec["description"],
            concurrency_limit=ONE_AT_A_TIME,
        )
        for spec in deployment_specs(root)
    ]
    serve(*deployments)


def deploy_to_pool(pool: str) -> list[str]:
    """Register the deployments on a work pool; `prefect worker start --pool <pool>` then runs them."""
    from prefect import Flow

    root = paths.project_root()
    ensure_concurrency_limits(configured_domains(root))
    ids = []
    for spec in deployment_specs(root):
        flow = Flow.from_source(source=str(root), entrypoint=spec["entrypoint"])
        ids.append(
            str(
                flow.deploy(
                    name=spec["name"],
                    work_pool_name=pool,
                    parameters=spec["parameters"],
                    tags=spec["tags"],
                    schedules=spec["schedules"],
                    description=spec["description"],
                    concurrency_limit=ONE_AT_A_TIME,
                    build=False,
                    push=False,
                    print_next_steps=False,
                )
            )
        )
    return ids
