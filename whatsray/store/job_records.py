"""The rows of the scheduler's tables (migration 3), as frozen values.

The store knows the columns; `whatsray.scheduling` knows what they mean (it turns a `JobRecord`
into a validated `Job`, with a typed trigger). Documents (payload, trigger, quiet hours, a run's
result) are plain dicts here: JSON in the database.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["JobKind", "JobRecord", "JobRunRecord", "RunStatus"]

JobKind = Literal["reminder", "system"]
RunStatus = Literal["pending", "dispatched", "done", "skipped", "failed"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class JobRecord(_Record):
    id: str
    name: str
    kind: JobKind
    chat: str | None
    payload: dict[str, Any]
    trigger: dict[str, Any]
    timezone: str | None
    quiet_hours: dict[str, Any] | None
    misfire_grace_s: float
    coalesce: bool
    enabled: bool
    active_since: float  # no fire time at or before this is due (created, restarted, rescheduled)
    created_at: float
    updated_at: float


class JobRunRecord(_Record):
    """One run of a job: recorded (`pending`) before it is dispatched, then settled once.

    `scheduled_for` is the trigger's fire time; `due_at` is when it is dispatched (later than
    `scheduled_for` when quiet hours moved it). `entry_id` is the inbox entry of a reminder's
    run; `result` what a system job reported.
    """

    run_id: str
    job_id: str
    scheduled_for: float
    due_at: float
    status: RunStatus
    reason: str | None = None
    result: dict[str, Any] | None = None
    entry_id: str | None = None
    created_at: float
    updated_at: float
