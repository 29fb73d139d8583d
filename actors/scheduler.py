"""The Scheduler actor: one per platform, the owner of the APScheduler timers.

Ray restarts it when it dies (`max_restarts=-1`); the constructor then loads every job from the
store and catches up (`SchedulerCore.start`: pending runs re-dispatched, missed fire times planned
by the misfire policy), so a crash never loses or doubles a run. The jobs of the jobs file
(`configs/jobs.yaml`, loaded and checked by the platform before the actor is created) arrive as
specs and are applied at every start. The jobs API reaches it through
`call` (an `ActorProxy` is a `JobsPort`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from actors.proxy import ActorProxy, Forwarder
from whatsray.inbox import Inbox
from whatsray.scheduling import (
    DeadLetterReplayer,
    JobSpec,
    JobStorePort,
    SchedulerCore,
    SystemTasks,
)
from whatsray.scheduling import default_system_jobs as system_job_specs

JOBS_METHODS = (
    "create_job",
    "list_jobs",
    "get_job",
    "update_job",
    "delete_job",
    "start_job",
    "stop_job",
    "job_runs",
)

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
    ) -> None:
        self._inbox = Inbox.from_url(redis_url, partitions=partitions)
        job_store = cast(JobStorePort, ActorProxy(store))
        replayers = {pnid: cast(DeadLetterReplayer, ActorProxy(h)) for pnid, h in outboxes.items()}
        self._core = SchedulerCore(
            job_store,
            self._inbox,
            default_timezone=default_timezone,
            system=SystemTasks(job_store, replayer_for=replayers.__getitem__, now=time.time),
            system_jobs=system_job_specs() if system_jobs else (),
            sweep_every_s=sweep_every_s,
            config_jobs=config_jobs,  # from the jobs file, checked by the platform at start
        )
        self._forward = Forwarder(self._core, JOBS_METHODS)
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

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        await asyncio.shield(self._started)  # jobs are loaded before the first call is served
        return await self._forward.call(method, *args, **kwargs)

    async def ping(self) -> bool:
        await asyncio.shield(self._started)
        return True

    async def stats(self) -> dict[str, Any]:
        return self._core.stats_dict()
