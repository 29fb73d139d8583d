"""The Scheduler actor: one per platform, the owner of the APScheduler timers.

Ray restarts it when it dies (`max_restarts=-1`); the constructor then loads every job from the
store and catches up (`SchedulerCore.start`: pending runs re-dispatched, missed fire times planned
by the misfire policy), so a crash never loses or doubles a run. The jobs of the jobs file
(`configs/jobs.yaml`, loaded and checked by the platform before the actor is created) arrive as
specs and are applied at every start. It serves `JobsPort` (the jobs API and the reminder tools
reach it through `actors.clients.JobsClient`), readiness and its counters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from actors.clients import JobStoreClient, ReplayerClient
from actors.metrics import start_actor_metrics
from whatsray.calls import calls
from whatsray.inbox import Inbox
from whatsray.observability.logs import LogSetup, configure_logging
from whatsray.scheduling import SchedulerCore, SystemTasks
from whatsray.scheduling import default_system_jobs as system_job_specs
from whatsray.scheduling.models import Job, JobKind, JobPatch, JobSpec, NextRun
from whatsray.store.job_records import JobRunRecord

log = logging.getLogger(__name__)


class SchedulerActor:
    def __init__(
        self,
        *,
        redis_url: str,
        partitions: int,
        store: Any,
        outboxes: Mapping[str, Any],
        default_timezone: str,
        system_jobs: bool = True,
        sweep_every_s: float = 30.0,
        config_jobs: Sequence[JobSpec] = (),
        logs: LogSetup | None = None,
    ) -> None:
        start_actor_metrics("scheduler")
        configure_logging(logs)  # first: what the constructor logs is formatted and redacted
        self._inbox = Inbox.from_url(redis_url, partitions=partitions)
        job_store = JobStoreClient(store)
        replayers = {pnid: ReplayerClient(h) for pnid, h in outboxes.items()}
        self._core = SchedulerCore(
            job_store,
            self._inbox,
            default_timezone=default_timezone,
            system=SystemTasks(job_store, replayer_for=replayers.__getitem__, now=time.time),
            system_jobs=system_job_specs() if system_jobs else (),
            sweep_every_s=sweep_every_s,
            config_jobs=config_jobs,  # from the jobs file, checked by the platform at start
        )
        self._started = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        # The store may still be starting after a deploy or a crash: wait it out, never crash-loop.
        delay = 0.5
        while True:
            try:
                await self._core.start()
                return
            except Exception:
                log.exception("scheduler start failed; retrying in %.1f s", delay)
                await self._core.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def drain(self) -> None:
        """A new release's scheduler takes the jobs over (actors/rollout.py): fire no more.
        A run cut off here is made up by the next scheduler's sweep (docs/scheduler.md)."""
        self._started.cancel()
        await self._core.close()

    async def _ready(self) -> SchedulerCore:
        """The core, once its jobs are loaded (every method waits for that first)."""
        if not self._started.done():
            await asyncio.shield(self._started)  # a caller giving up must not cancel the start
        return self._core

    # -- JobsPort -----------------------------------------------------------------------------

    async def create_job(self, spec: JobSpec) -> Job:
        return await (await self._ready()).create_job(spec)

    async def list_jobs(self, kind: JobKind | None = None, chat: str | None = None) -> list[Job]:
        return await (await self._ready()).list_jobs(kind, chat)

    async def get_job(self, job_id: str) -> Job:
        return await (await self._ready()).get_job(job_id)

    async def update_job(self, job_id: str, patch: JobPatch) -> Job:
        return await (await self._ready()).update_job(job_id, patch)

    async def delete_job(self, job_id: str) -> None:
        return await (await self._ready()).delete_job(job_id)

    async def start_job(self, job_id: str) -> Job:
        return await (await self._ready()).start_job(job_id)

    async def stop_job(self, job_id: str) -> Job:
        return await (await self._ready()).stop_job(job_id)

    async def job_runs(self, job_id: str, limit: int = 50, offset: int = 0) -> list[JobRunRecord]:
        return await (await self._ready()).job_runs(job_id, limit, offset)

    # -- readiness and counters ---------------------------------------------------------------

    async def ping(self) -> bool:
        await self._ready()
        return True

    async def next_runs(self, limit: int = 5) -> list[NextRun]:
        """The jobs whose timers fire soonest (`GET /api/status`)."""
        return await (await self._ready()).next_runs(limit)

    async def call_counts(self) -> dict[str, int]:
        return calls.snapshot()
