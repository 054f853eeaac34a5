"""Prefect flows. Each task runs one DVC stage (`dvc repro --single-item <stage>@<domain>`), so a
flow run and `dvc repro` are the same computation, cached the same, and leave dvc.lock true.

What keeps a flow run about as cheap as a bare `dvc repro`: each domain's DVC commands run in one
long-lived DVC process (a DvcSession) instead of one process each, started on first use; one
`dvc status` for every domain at the start lets a stage that is up to date (and whose upstream
stages did not run) finish without starting DVC or taking a concurrency slot; and slots are taken
with one request each.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
from prefect import allow_failure, flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.futures import PrefectFuture
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from domains.common import champion, paths, provenance
from domains.common.dvc import DvcSession, dvc
from domains.common.errors import PipelineError
from flows.config import SETTINGS

RAN, CACHED, UP_TO_DATE, PROMOTED, KEPT = "ran", "cached", "up to date", "promoted", "kept"
CHANGED = {RAN, PROMOTED}  # what an upstream step returns when a later stage's inputs changed in this run


class StageFailed(Exception):
    """A stage stopped on its input (gate, params, data): retrying would fail the same way."""


class TransientStageError(Exception):
    """A stage crashed or timed out: worth a retry."""


def _retry_if_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except StageFailed:
        return False
    except Exception:
        return True
    return False


def _failure_reason(domain: str, stage: str, output: str, root: Path) -> str:
    gate_file = paths.gate_file(root, domain)
    if stage == "validate" and gate_file.is_file():
        gate = json.loads(gate_file.read_text())
        if gate["verdict"] == "block":
            return f"gate blocked {domain}: " + " | ".join(gate["reasons"])
    errors = [line.strip() for line in output.splitlines() if line.startswith(("error:", "crashed:"))]
    return errors[0] if errors else (output.strip().splitlines() or ["no output"])[-1]


_sessions: dict[str, DvcSession] = {}
_sessions_lock = threading.Lock()


def _session(domain: str) -> DvcSession:
    """This process's DVC session for a domain (a domain's stages run one at a time); a new one after a kill."""
    with _sessions_lock:
        session = _sessions.get(domain)
        if session is None or not session.alive():
            session = _sessions[domain] = DvcSession(paths.project_root())
        return session


def _close_sessions(domains: list[str]) -> None:
    with _sessions_lock:
        for domain in domains:
            if session := _sessions.pop(domain, None):
                session.close()


LEASE_SECONDS = 300  # a slot held by a process that died is freed by the server this long after its last renewal
T = TypeVar("T")


def _promptly(call: Callable[[], T]) -> T:
    """`call()` against the API, retrying a busy server after 0.1 s instead of Prefect's 2 s back-off.

    A SQLite-backed server answers 503 to a write while it records the previous task's states, which
    cost about 2 s before each stage here; a few quick retries are enough. Connection errors are retried
    the same way (Prefect's retries, turned off here, would have). Then Prefect's own retries.
    """
    for _ in range(20):
        try:
            with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
                return call()
        except httpx.HTTPStatusError as err:
            if err.response.status_code != 503:
                raise
        except httpx.TransportError:  # e.g. a kept-alive connection the server closed
            pass
        time.sleep(0.1)
    return call()


def _artifact(create: Callable[..., object], **fields: object) -> None:
    """Publish an artifact (create_*_artifact), promptly."""
    _promptly(lambda: create(**fields))


@contextmanager
def _slots(names: list[str]) -> Iterator[None]:
    """Hold one slot of each global concurrency limit (limits that do not exist are ignored).

    The same leases as Prefect's `concurrency()`, taken with one request and given back with one:
    `concurrency()` goes through a queue service that added about 2 s per stage here.
    """
    with get_client(sync_client=True) as client:
        while True:
            try:
                response = _promptly(
                    lambda: client.increment_concurrency_slots_with_lease(
                        names=names, slots=1, mode="concurrency", lease_duration=LEASE_SECONDS
                    )
                )
                break
            except httpx.HTTPStatusError as err:
                if err.response.status_code != 423:  # 423: no free slot yet, retry when the server says
                    raise
                time.sleep(float(err.response.headers.get("Retry-After", 1)))
        granted = response.json()
        if not granted.get("limits"):
            yield
            return
        done = threading.Event()
        renewer = threading.Thread(target=_renew, args=(granted["lease_id"], done), daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()
            _promptly(lambda: client.release_concurrency_slots_with_lease(lease_id=granted["lease_id"]))


def _renew(lease_id: str, done: threading.Event) -> None:
    with get_client(sync_client=True) as client:
        while not done.wait(LEASE_SECONDS / 3):
            try:
                client.renew_concurrency_lease(lease_id=lease_id, lease_duration=LEASE_SECONDS)
            except httpx.HTTPError:  # the next renewal may succeed; the lease has time left
                pass


def ensure_concurrency_limits(domains: list[str]) -> None:
    """Create the training limit (a slot per GPU, at least one), the stage limit (a slot per two CPU
    cores) and each domain's limit (one slot) where missing; existing ones keep their settings.

    Every run makes sure of them, not only `aiflow serve`: without them an all-domains run trained
    its domains at once, and on 2 cores the medical and defects trainings together ran for over
    12 minutes instead of 2.5 one after the other.
    """
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    wanted = [SETTINGS.training_limit, SETTINGS.stage_limit] + [SETTINGS.domain_limit_prefix + d for d in domains]
    with get_client(sync_client=True) as client:
        for name in wanted:
            try:
                _promptly(lambda: client.read_global_concurrency_limit_by_name(name))
            except ObjectNotFound:
                slots = 1
                if name == SETTINGS.training_limit:
                    import torch  # only here: importing torch costs a no-op run about a second

                    slots = max(1, torch.cuda.device_count())
                elif name == SETTINGS.stage_limit:
                    slots = max(1, (os.cpu_count() or 1) // SETTINGS.cores_per_stage)
                _promptly(
                    lambda: client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
                )


@task(task_run_name="status")
def stages_up_to_date(domains: list[str]) -> list[str]:
    """The stages (`<stage>@<domain>`) that `dvc status` finds up to date now (none when it cannot tell).

    One `dvc status` for every domain of the run, in the first domain's DVC process: with nothing to
    do, no other domain starts DVC at all.
    """
    targets = [f"{stage}@{domain}" for domain in domains for stage in paths.STAGES]
    proc = _session(domains[0]).run("status", "--json", *targets, timeout=SETTINGS.status_timeout_seconds)
    try:
        changed = json.loads(proc.stdout) if proc.returncode == 0 else None
    except ValueError:
        changed = None
    if not isinstance(changed, dict):
        get_run_logger().warning(
            f"dvc status gave no answer: every stage of {', '.join(domains)} goes through dvc repro"
        )
        return []
    return [target for target in targets if target not in changed]


@task(
    task_run_name="{stage}@{domain}",
    retries=SETTINGS.retries,
    retry_delay_seconds=SETTINGS.retry_delay_seconds,
    retry_condition_fn=_retry_if_transient,
)
def run_stage(
    domain: str, stage: str, force: bool = False, up_to_date: list[str] | None = None, upstream: str | None = None
) -> str:
    """`dvc repro --single-item <stage>@<domain>`: runs the stage only if its deps or params changed.

    Returns without starting DVC when `<stage>@<domain>` is in `up_to_date` (from `dvc status` at the
    start of this run) and the step before it (`upstream`: its result) changed nothing.
    """
    if not force and f"{stage}@{domain}" in (up_to_date or []) and upstream not in CHANGED:
        return UP_TO_DATE
    root = paths.project_root()
    logger = get_run_logger()
    limits = [SETTINGS.stage_limit, SETTINGS.domain_limit_prefix + domain] + (
        [SETTINGS.training_limit] if stage == "train" else []
    )
    with _slots(limits):
        try:
            proc = _session(domain).run(
                "repro",
                "--single-item",
                f"{stage}@{domain}",
                *(["--force"] if force else []),
                timeout=SETTINGS.timeout(stage),
            )
        except subprocess.TimeoutExpired:
            raise TransientStageError(f"{stage}@{domain} timed out after {SETTINGS.timeout(stage)} s") from None
    output = proc.stdout + proc.stderr
    for line in output.strip().splitlines()[-20:]:
        logger.info(line)
    if proc.returncode != 0 and any(line.startswith("error: ") for line in output.splitlines()):
        # `aiflow stage` printed its own one-line reason (gate, params, data): not worth a retry.
        raise StageFailed(_failure_reason(domain, stage, output, root))
    if proc.returncode != 0:
        raise TransientStageError(
            f"{stage}@{domain} exited {proc.returncode}: {_failure_reason(domain, stage, output, root)}"
        )
    return RAN if "Running stage" in proc.stdout else CACHED


@task(task_run_name="publish-gate@{domain}")
def publish_gate(domain: str) -> str | None:
    gate_file = paths.gate_file(paths.project_root(), domain)
    if not gate_file.is_file():
        return None
    gate = json.loads(gate_file.read_text())
    failed = [c for c in gate["checks"] if not c["passed"]]
    lines = [
        f"# Data-quality gate: {domain}: **{gate['verdict'].upper()}**",
        "",
        f"{gate['rows_in']} rows in, {gate['rows_passed']} passed, {gate['rows_quarantined']} quarantined.",
        "",
    ]
    lines += [f"- **{c['severity']}** `{c['name']}` ({c['tool']}): {c['detail']}" for c in failed] or [
        "All checks passed."
    ]
    _artifact(
        create_markdown_artifact, key=f"{domain}-gate", markdown="\n".join(lines), description=f"{domain} gate verdict"
    )
    return gate["verdict"]


@task(task_run_name="publish-results@{domain}")
def publish_results(domain: str) -> dict:
    root = paths.project_root()
    metrics = json.loads(paths.metrics_file(root, domain).read_text())
    decision = json.loads(paths.decision_file(root, domain).read_text())
    table = [{"model": model, **{k: round(v, 4) for k, v in values.items()}} for model, values in metrics.items()]
    _artifact(
        create_table_artifact,
        key=f"{domain}-metrics",
        table=table,
        description=f"{domain}: {decision['decision']} {decision['candidate']}: {decision['reason']}",
    )
    report = paths.report_html(root, domain)
    _artifact(
        create_link_artifact,
        key=f"{domain}-report",
        link=report.resolve().as_uri(),
        link_text=f"{domain} report",
        description=str(report),
    )
    lock = provenance.dvc_lock_hashes(root, domain)
    params = json.loads((paths.stage_dir(root, domain, "report") / "provenance.json").read_text())["params"]
    _artifact(
        create_markdown_artifact,
        key=f"{domain}-provenance",
        description=f"{domain}: dvc.lock hashes and params",
        markdown="\n".join(
            [
                f"# Provenance: {domain}",
                "",
                f"commit `{provenance.git_commit(root)}`",
                "",
                "| stage | output | md5 |",
                "|---|---|---|",
                *(f"| {s} | {p} | `{h}` |" for s, outs in lock.items() for p, h in outs.items()),
                "",
                "```json",
                json.dumps(params, indent=2),
                "```",
            ]
        ),
    )
    return decision


@task(task_run_name="promote@{domain}")
def promote_if_better(domain: str, decision: dict) -> str:
    """Record the challenger as champion when evaluate decided so; publish the decision either way.
    Returns PROMOTED when the registry changed (evaluate depends on it), else KEPT."""
    root = paths.project_root()
    outcome = {
        "decision": decision["decision"],
        "reason": decision["reason"],
        "champion": champion.read_champion(root, domain),
    }
    promoted = False
    if decision["decision"] == "promote":
        try:
            outcome["champion"] = champion.promote(root, domain)
            promoted = True
        except PipelineError as err:  # e.g. already the champion: nothing to do
            outcome["reason"] = str(err)
    current = outcome["champion"]
    _artifact(
        create_markdown_artifact,
        key=f"{domain}-promotion",
        description=f"{domain} promotion decision",
        markdown=(
            f"# Promotion: {domain}\n\n**{decision['decision']}** `{decision['candidate']}`: {outcome['reason']}\n\n"
            f"Champion now: {'v' + str(current['version']) + ' (' + current['model'] + ')' if current else 'none'}"
        ),
    )
    return PROMOTED if promoted else KEPT


@task(task_run_name="push@{domain}", retries=SETTINGS.retries, retry_delay_seconds=SETTINGS.retry_delay_seconds)
def push(domain: str) -> str:
    """Send this domain's outputs to the default DVC remote, so any clone can `dvc pull` them."""
    proc = dvc(paths.project_root(), "push", f"report@{domain}", "--with-deps", capture=True)
    if proc.returncode != 0:
        raise TransientStageError(f"dvc push failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "pushed"


def _submit_domain(
    domain: str, force: bool, promote: bool, push_outputs: bool, up_to_date: PrefectFuture | None
) -> list[PrefectFuture]:
    """The domain's stages in order; later stages wait on earlier ones, so a failure stops the chain."""
    futures: dict[str, PrefectFuture] = {}
    previous: PrefectFuture | None = None
    for stage in paths.STAGES:
        # The previous stage's result is an argument: a stage waits for it, and a failure stops the chain.
        futures[stage] = run_stage.submit(domain, stage, force, up_to_date, previous)
        previous = futures[stage]
    gate = publish_gate.submit(domain, wait_for=[allow_failure(futures["validate"])])
    decision = publish_results.submit(domain, wait_for=[futures["report"]])
    finals = [gate, decision]
    if promote:
        promoted = promote_if_better.submit(domain, decision)
        # The registry is a dependency of evaluate: a promotion makes evaluate and the report stale,
        # so they run again through DVC with the new champion, and dvc.lock stays true.
        after = [f"evaluate@{domain}", f"report@{domain}"]
        evaluate = run_stage.submit(domain, "evaluate", False, after, promoted)
        finals += [promoted, evaluate, run_stage.submit(domain, "report", False, after, evaluate)]
    if push_outputs:
        finals.append(push.submit(domain, wait_for=finals[-1:]))
    return list(futures.values()) + finals


def _tag_with_commit() -> None:
    """Every run carries the git commit it ran, as a tag (visible and filterable in the UI)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    commit = provenance.git_commit(paths.project_root())
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.id)
        _promptly(lambda: client.update_flow_run(flow_run.id, tags=sorted({*run.tags, f"commit:{commit[:12]}"})))


def _run(domains: list[str], force: bool, promote: bool, push_outputs: bool) -> dict[str, str]:
    try:
        _session(domains[0])  # DVC starts while Prefect creates the task runs; other domains' on first use
        ensure_concurrency_limits(domains)
        up_to_date = stages_up_to_date.submit(domains) if not force else None
        futures = {name: _submit_domain(name, force, promote, push_outputs, up_to_date) for name in domains}
        _tag_with_commit()  # while the first DVC commands run
        failures = {}
        for name, chain in futures.items():
            for future in chain:
                future.wait()
                if future.state.is_failed():
                    error = future.state.result(raise_on_failure=False)
                    failures[name] = str(error) if isinstance(error, BaseException) else future.state.message
                    break
    finally:
        _close_sessions(domains)
    if failures:
        raise StageFailed("; ".join(f"{name}: {msg}" for name, msg in failures.items()))
    return {name: "completed" for name in domains}


@flow(name="domain-pipeline", flow_run_name="{domain}")
def domain_flow(domain: str, force: bool = False, promote: bool = True, push: bool = False) -> dict[str, str]:
    """acquire -> validate (gate) -> prepare -> train -> evaluate -> report, then promote and push."""
    return _run([domain], force, promote, push)


@flow(name="all-domains")
def all_domains_flow(
    domains: list[str] | None = None, force: bool = False, promote: bool = True, push: bool = False
) -> dict[str, str]:
    """Every configured domain, concurrently (each domain's stages in order)."""
    from domains.common.registry import configured_domains

    return _run(domains or configured_domains(paths.project_root()), force, promote, push)
