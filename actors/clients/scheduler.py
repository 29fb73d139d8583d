# Ray handles are untyped: a remote result is Any, and the return annotation is the contract.
# mypy: disable-error-code="no-any-return"
"""Clients of the Scheduler actor: `JobsPort`, for the jobs API and the reminder tools; and its
next runs, for the admin API's status."""

from __future__ import annotations

from typing import Any

from actors.clients._base import Client
from whatsray.calls import calls
from whatsray.scheduling.models import Job, JobKind, JobPatch, JobSpec, NextRun
from whatsray.scheduling.ports import JobsPort
from whatsray.store.job_records import JobRunRecord

SCHEDULER = "scheduler"


class JobsClient(Client):
    """Jobs through the Scheduler actor (`JobsPort`); its typed errors cross as they are."""

    async def create_job(self, spec: JobSpec) -> Job:
        calls.count(SCHEDULER, "create_job")
        return await self._handle.create_job.remote(spec)

    async def list_jobs(self, kind: JobKind | None = None, chat: str | None = None) -> list[Job]:
        calls.count(SCHEDULER, "list_jobs")
        return await self._handle.list_jobs.remote(kind, chat)

    async def get_job(self, job_id: str) -> Job:
        calls.count(SCHEDULER, "get_job")
        return await self._handle.get_job.remote(job_id)

    async def update_job(self, job_id: str, patch: JobPatch) -> Job:
        calls.count(SCHEDULER, "update_job")
        return await self._handle.update_job.remote(job_id, patch)

    async def delete_job(self, job_id: str) -> None:
        calls.count(SCHEDULER, "delete_job")
        return await self._handle.delete_job.remote(job_id)

    async def start_job(self, job_id: str) -> Job:
        calls.count(SCHEDULER, "start_job")
        return await self._handle.start_job.remote(job_id)

    async def stop_job(self, job_id: str) -> Job:
        calls.count(SCHEDULER, "stop_job")
        return await self._handle.stop_job.remote(job_id)

    async def job_runs(self, job_id: str, limit: int = 50, offset: int = 0) -> list[JobRunRecord]:
        calls.count(SCHEDULER, "job_runs")
        return await self._handle.job_runs.remote(job_id, limit, offset)


class SchedulerStatusClient(Client):
    """The ingress's `GET /api/status`: the jobs whose timers fire soonest."""

    async def next_runs(self, limit: int = 5) -> list[NextRun]:
        calls.count(SCHEDULER, "next_runs")
        return await self._handle.next_runs.remote(limit)


def _check(handle: Any) -> None:
    """Never called: mypy holds the client to `JobsPort`."""
    jobs: JobsPort = JobsClient(handle)
    del jobs
