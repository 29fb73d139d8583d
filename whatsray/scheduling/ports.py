"""What the scheduler offers (`JobsPort`) and what it needs (the store, the inbox, the outboxes).

`JobsPort` is the one interface to jobs: the REST API (`whatsray.admin.jobs_api`) talks to it,
and so can agents' scheduling tools or an MCP server. `SchedulerCore` implements it; on Ray the
Scheduler actor's typed client (`actors.clients.JobsClient`) stands in for it, and the scheduler
reaches the Store actor through `actors.clients.JobStoreClient` (a `JobStorePort`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from whatsray.inbox import AppendResult
from whatsray.outbox.ledger import DeadLetter, OutboundRecord
from whatsray.scheduling.models import Job, JobKind, JobPatch, JobSpec
from whatsray.store.job_records import JobRecord, JobRunRecord, RunStatus
from whatsray.whatsapp.events import Event

__all__ = ["DeadLetterReplayer", "EventSink", "JobStorePort", "JobsPort"]


class JobsPort(Protocol):
    """Jobs, for any client. Errors: `JobValidationError` (a bad definition, naming the field),
    `UnknownJobError` (no such id), `JobConflictError` (contradicts the job's state)."""

    async def create_job(self, spec: JobSpec) -> Job:
        """Create and schedule a job. A spec whose `id` exists with the same definition returns
        that job (a retried create); with another definition it is a conflict."""
        ...

    async def list_jobs(
        self, kind: JobKind | None = None, chat: str | None = None
    ) -> list[Job]: ...

    async def get_job(self, job_id: str) -> Job: ...

    async def update_job(self, job_id: str, patch: JobPatch) -> Job:
        """Change the given fields; a new trigger or zone starts the schedule anew from now."""
        ...

    async def delete_job(self, job_id: str) -> None:
        """Unschedule and delete a job and its run history (system jobs are stopped instead)."""
        ...

    async def start_job(self, job_id: str) -> Job:
        """Enable a stopped job; runs missed while it was stopped are not made up for."""
        ...

    async def stop_job(self, job_id: str) -> Job:
        """Disable a job; a run waiting for the end of quiet hours is skipped."""
        ...

    async def job_runs(self, job_id: str, limit: int = 50, offset: int = 0) -> list[JobRunRecord]:
        """A job's runs, newest fire time first."""
        ...


class JobStorePort(Protocol):
    """The store's methods the scheduler uses (`whatsray.store.Store`, or its actor's client)."""

    async def insert_job(self, job: JobRecord) -> bool: ...

    async def replace_job(self, job: JobRecord) -> bool: ...

    async def delete_job(self, job_id: str) -> bool: ...

    async def get_job(self, job_id: str) -> JobRecord | None: ...

    async def list_jobs(
        self, kind: JobKind | None = None, chat: str | None = None, enabled: bool | None = None
    ) -> list[JobRecord]: ...

    async def record_job_run(self, run: JobRunRecord) -> bool: ...

    async def settle_job_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        reason: str | None = None,
        result: dict[str, Any] | None = None,
        entry_id: str | None = None,
    ) -> bool: ...

    async def list_job_runs(
        self, job_id: str, limit: int = 50, offset: int = 0
    ) -> list[JobRunRecord]: ...

    async def pending_job_runs(self, job_id: str | None = None) -> list[JobRunRecord]: ...

    async def last_job_run_at(self, job_id: str) -> float | None: ...

    async def prune_job_runs(self, before: float) -> int: ...

    async def activity_since(self, since: float) -> dict[str, int]: ...

    async def list_dead_letters(
        self, limit: int = 50, include_replayed: bool = False, offset: int = 0
    ) -> list[DeadLetter]: ...

    async def get_outbound(self, outbound_id: str) -> OutboundRecord | None: ...

    async def opted_in_chats(self, phone_number_id: str | None = None) -> list[str]:
        """The chats whose contact opted in to greetings (migration 5), for the fan-out."""
        ...


class EventSink(Protocol):
    """Where reminder runs go: the inbox (`whatsray.inbox.Inbox`), which appends each event to
    its chat's partition and dedupes on the idempotency key (the run id)."""

    async def append(self, events: Sequence[Event]) -> AppendResult: ...


class DeadLetterReplayer(Protocol):
    """A business number's outbox, as the dead-letter sweep uses it."""

    async def replay_dead_letter(self, dead_letter_id: str) -> OutboundRecord: ...
