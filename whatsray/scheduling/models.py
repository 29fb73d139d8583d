"""Jobs as values: what a client sends (`JobSpec`, `JobPatch`) and what the scheduler keeps
(`Job`). Shapes are checked here (pydantic); meaning (a cron expression that parses, a known time
zone, a chat key, a payload for the job's kind) in `validation.py`.

Times that the API returns are unix seconds. Datetimes a client sends (`run_at`, `start_at`) may
be naive: they are then read in the job's time zone.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from whatsray.store.job_records import JobKind, JobRecord, JobRunRecord

__all__ = [
    "DEFAULT_GRACE_S",
    "CronSpec",
    "DateSpec",
    "IntervalSpec",
    "Job",
    "JobKind",
    "JobPatch",
    "JobRunRecord",
    "JobSpec",
    "Misfire",
    "NextRun",
    "QuietHours",
    "TriggerSpec",
]

DEFAULT_GRACE_S = 300.0
MAX_INTERVAL_S = 366 * 24 * 3600
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CronSpec(_Value):
    """A 5-field crontab line (`minute hour day month day-of-week`), e.g. `0 9 * * 1-5`."""

    type: Literal["cron"] = "cron"
    expression: str = Field(min_length=1, max_length=200, examples=["0 9 * * 1-5"])


class IntervalSpec(_Value):
    """Every `seconds`, counted from `start_at` (default: when the schedule became active)."""

    type: Literal["interval"] = "interval"
    seconds: int = Field(ge=1, le=MAX_INTERVAL_S)
    start_at: datetime | None = None


class DateSpec(_Value):
    """Once, at `run_at`."""

    type: Literal["date"] = "date"
    run_at: datetime


TriggerSpec = Annotated[CronSpec | IntervalSpec | DateSpec, Field(discriminator="type")]


class QuietHours(_Value):
    """A daily quiet period in the job's time zone (`22:00`-`08:00` crosses midnight). A run
    that falls inside is moved to its end (`defer`) or not made (`skip`)."""

    start: str = Field(examples=["22:00"])
    end: str = Field(examples=["08:00"])
    policy: Literal["defer", "skip"] = "defer"

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError(f"must be a time of day as HH:MM (00:00 to 23:59), got {value!r}")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class Misfire(_Value):
    """A run more than `grace_s` late (the scheduler was down) is skipped, not fired; several
    missed runs of one job fire once when `coalesce` is set."""

    grace_s: float = Field(default=DEFAULT_GRACE_S, ge=0, le=7 * 24 * 3600)
    coalesce: bool = True


class JobSpec(_Value):
    """A new job. `id` is optional: the API names the job when it is absent (a client that
    retries a POST with its own id creates the job once)."""

    id: str | None = Field(default=None, pattern=JOB_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    kind: JobKind = "reminder"
    chat: str | None = Field(
        default=None,
        max_length=200,
        description="'<phone_number_id>:<user>'; required for a reminder, absent for a system job",
    )
    payload: dict[str, Any] = Field(
        description='A reminder: {"text": what the agent turns into the message}. A system job:'
        ' {"task": "cleanup" | "dead_letter_sweep" | "daily_summary", ...}'
    )
    trigger: TriggerSpec
    timezone: str | None = Field(
        default=None,
        max_length=64,
        description="An IANA zone (Europe/Berlin); default: WHATSRAY_DEFAULT_TIMEZONE",
    )
    quiet_hours: QuietHours | None = None
    misfire: Misfire = Misfire()
    enabled: bool = True


class JobPatch(_Value):
    """The fields to change (absent: unchanged; `quiet_hours: null` removes them). A job's id,
    kind and chat never change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    payload: dict[str, Any] | None = None
    trigger: TriggerSpec | None = None
    timezone: str | None = Field(default=None, max_length=64)
    quiet_hours: QuietHours | None = None
    misfire: Misfire | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> JobPatch:
        nullable = {"quiet_hours", "timezone"}
        for name in self.model_fields_set - nullable:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class Job(_Value):
    """A job as the scheduler keeps it. `next_run_at` is computed when the job is returned
    (None: stopped, or a one-shot job that has run)."""

    id: str
    name: str
    kind: JobKind
    chat: str | None
    payload: dict[str, Any]
    trigger: TriggerSpec
    timezone: str | None
    quiet_hours: QuietHours | None
    misfire: Misfire
    enabled: bool
    active_since: float
    created_at: float
    updated_at: float
    next_run_at: float | None = None

    def to_record(self) -> JobRecord:
        return JobRecord(
            id=self.id,
            name=self.name,
            kind=self.kind,
            chat=self.chat,
            payload=self.payload,
            trigger=self.trigger.model_dump(mode="json"),
            timezone=self.timezone,
            quiet_hours=None if self.quiet_hours is None else self.quiet_hours.model_dump(),
            misfire_grace_s=self.misfire.grace_s,
            coalesce=self.misfire.coalesce,
            enabled=self.enabled,
            active_since=self.active_since,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    @classmethod
    def from_record(cls, record: JobRecord) -> Job:
        return cls.model_validate(
            {
                **record.model_dump(exclude={"misfire_grace_s", "coalesce"}),
                "misfire": {"grace_s": record.misfire_grace_s, "coalesce": record.coalesce},
            }
        )

    def definition(self) -> dict[str, Any]:
        """What a client defined (for "is this POST a retry of the same job?")."""
        return self.model_dump(
            mode="json",
            exclude={"active_since", "created_at", "updated_at", "next_run_at"},
        )


class NextRun(_Value):
    """A job the scheduler wakes for soon (`SchedulerCore.next_runs`, `GET /api/status`)."""

    job_id: str
    name: str
    kind: JobKind
    chat: str | None
    at: float  # when its timer fires next (a fire time in quiet hours is deferred then)
