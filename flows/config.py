"""Orchestration settings, in one place: schedule, retries, timeouts, concurrency limits.

Environment variables override the schedules (AIFLOW_CRON, AIFLOW_SCORING_CRON, AIFLOW_TIMEZONE) so a team can move the
nightly run without a code change; everything else is code-reviewed here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Orchestration:
    cron: str = field(default_factory=lambda: os.environ.get("AIFLOW_CRON", "0 2 * * *"))  # nightly, 02:00
    timezone: str = field(default_factory=lambda: os.environ.get("AIFLOW_TIMEZONE", "UTC"))
    # Scoring deployments: after the nightly training, on data/<domain>/inbox (the input is a parameter).
    scoring_cron: str = field(default_factory=lambda: os.environ.get("AIFLOW_SCORING_CRON", "0 4 * * *"))
    # Transient failures (a killed process, a full disk, a lost worker) are retried; a blocked gate
    # or bad params are not: the same input fails the same way.
    retries: int = 2
    retry_delay_seconds: int = 30
    stage_timeout_seconds: dict[str, int] = field(
        default_factory=lambda: {
            "acquire": 1800,
            "validate": 1800,
            "prepare": 1800,
            "train": 4 * 3600,
            "evaluate": 1800,
            "report": 600,
        }
    )
    status_timeout_seconds: int = 600  # the `dvc status` each run asks first (hashes changed inputs)
    # Prefect global concurrency limits: training runs at once (one per GPU, one on a CPU-only machine; a run
    # of `train.processes: N` takes one slot and N GPUs),
    # and one stage at a time per domain so overlapping runs never write the same outputs at once.
    training_limit: str = "aiflow-training"
    domain_limit_prefix: str = "aiflow-domain-"
    # Stages at once on this server, of any domain: one per two CPU cores (created with that many slots).
    # On 2 cores, stages of other domains running next to a training made an all-domains run 1.25 times
    # as long as running them one after the other.
    stage_limit: str = "aiflow-stages"
    cores_per_stage: int = 2
    tags: tuple[str, ...] = ("aiflow",)

    def timeout(self, stage: str) -> int:
        return self.stage_timeout_seconds[stage]


SETTINGS = Orchestration()
