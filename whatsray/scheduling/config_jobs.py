"""Built-in user-facing jobs declared in `configs/jobs.yaml` (`WHATSRAY_JOBS_FILE`).

```yaml
jobs:
  morning_greeting:                    # job id `config:morning_greeting`
    cron: "0 8 * * *"                  # or `at: 2026-11-23T09:00` (once), or `every_s: 3600`
    timezone: Europe/Berlin            # default: WHATSRAY_DEFAULT_TIMEZONE
    text: Wish the user a good morning in one short, friendly sentence.
    audience: opted_in                 # every chat whose contact sent /subscribe
    enabled: false
  shop_reminder:
    chat: "106540352242922:15551234567"  # a fixed reminder for one chat
    cron: "0 9 * * 1"
    text: Remind the user that the workshop opens at 10 today.
```

An `audience` job is a system job with the task `greeting`: at each run the scheduler appends one
reminder-style input per opted-in chat (docs/scheduler.md, "Greetings"). A `chat` job is a plain
reminder. The file is checked whole when it is loaded (`JobsConfigError` lists every problem,
naming the job and the field); an absent file declares no job. At every scheduler start the file
wins: a job whose definition differs from the stored one is updated to the file's, and a
`config:` job no longer in the file is stopped (`SchedulerCore.start`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from whatsray.scheduling.errors import JobValidationError
from whatsray.scheduling.models import (
    CronSpec,
    DateSpec,
    IntervalSpec,
    Job,
    JobSpec,
    Misfire,
    QuietHours,
    TriggerSpec,
)
from whatsray.scheduling.validation import GREETING_TASK, MAX_REMINDER_TEXT, validate_job

__all__ = ["CONFIG_JOB_PREFIX", "ConfigJob", "JobsConfigError", "load_jobs_file", "parse_jobs"]

CONFIG_JOB_PREFIX = "config:"
_KEY = r"^[a-z0-9][a-z0-9_-]{0,59}$"


class JobsConfigError(ValueError):
    """The jobs file is invalid: one line per problem."""

    def __init__(self, source: str, problems: Collection[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {count} problem{'s' if count != 1 else ''}:\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (JobsConfigError, (self.source, self.problems))


class ConfigJob(BaseModel):
    """One entry of `jobs:`: exactly one of `cron`, `at`, `every_s`, and exactly one of
    `audience` (a greeting to the opted-in chats) and `chat` (a reminder for one chat)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)  # default: the key
    text: str = Field(min_length=1, max_length=MAX_REMINDER_TEXT)
    cron: str | None = Field(None, min_length=1, max_length=200)
    at: datetime | None = None
    every_s: int | None = Field(None, ge=1)
    timezone: str | None = Field(None, max_length=64)
    audience: Literal["opted_in"] | None = None
    chat: str | None = Field(None, max_length=200)
    phone_number_id: str | None = None  # a greeting to this business number's contacts only
    quiet_hours: QuietHours | None = None  # reminders only (`chat`)
    misfire: Misfire = Misfire()
    enabled: bool = True

    @model_validator(mode="after")
    def _one_of_each(self) -> ConfigJob:
        whens = [n for n in ("cron", "at", "every_s") if getattr(self, n) is not None]
        if len(whens) != 1:
            raise ValueError(
                "give exactly one of cron, at, every_s"
                + (f" (got {', '.join(whens)})" if whens else "")
            )
        if (self.audience is None) == (self.chat is None):
            raise ValueError(
                "give exactly one of audience (opted_in: a greeting) and chat (a reminder)"
            )
        if self.phone_number_id is not None and self.audience is None:
            raise ValueError("phone_number_id narrows a greeting's audience: only with audience")
        return self

    def trigger(self) -> TriggerSpec:
        if self.cron is not None:
            return CronSpec(expression=self.cron)
        if self.at is not None:
            return DateSpec(run_at=self.at)
        assert self.every_s is not None
        return IntervalSpec(seconds=self.every_s)

    def to_spec(self, key: str) -> JobSpec:
        payload: dict[str, Any]
        if self.audience is not None:
            payload = {"task": GREETING_TASK, "text": self.text, "audience": self.audience}
            if self.phone_number_id is not None:
                payload["phone_number_id"] = self.phone_number_id
        else:
            payload = {"text": self.text}
        return JobSpec(
            id=f"{CONFIG_JOB_PREFIX}{key}",
            name=self.name or key,
            kind="reminder" if self.audience is None else "system",
            chat=self.chat,
            payload=payload,
            trigger=self.trigger(),
            timezone=self.timezone,
            quiet_hours=self.quiet_hours,
            misfire=self.misfire,
            enabled=self.enabled,
        )


def spec_job(spec: JobSpec, now: float) -> Job:
    """The job a spec describes, as `SchedulerCore` stores it (and as config jobs validate)."""
    return Job(
        id=spec.id or "",
        name=spec.name,
        kind=spec.kind,
        chat=None if spec.chat is None else spec.chat.strip(),
        payload=spec.payload,
        trigger=spec.trigger,
        timezone=spec.timezone,
        quiet_hours=spec.quiet_hours,
        misfire=spec.misfire,
        enabled=spec.enabled,
        active_since=now,
        created_at=now,
        updated_at=now,
    )


def parse_jobs(
    data: Any, *, source: str = "jobs", default_timezone: str = "UTC", now: float | None = None
) -> tuple[JobSpec, ...]:
    """The job specs of a parsed jobs file; `JobsConfigError` with every problem."""
    if data is None:
        return ()
    if not isinstance(data, Mapping) or set(data) - {"jobs"}:
        raise JobsConfigError(source, ["the file holds one mapping, `jobs:` (name: job)"])
    jobs = data.get("jobs") or {}
    if not isinstance(jobs, Mapping):
        raise JobsConfigError(source, ["`jobs:` must map job names to jobs"])
    at = time.time() if now is None else now
    problems: list[str] = []
    specs: list[JobSpec] = []
    for key, body in jobs.items():
        if not isinstance(key, str) or not re.match(_KEY, key):
            problems.append(f"job {key!r}: a name is lowercase letters, digits, '_' or '-'")
            continue
        try:
            spec = ConfigJob.model_validate(body if body is not None else {}).to_spec(key)
            # A one-shot `at` that has passed is not an error here: it has simply run.
            validate_job(spec_job(spec, at), default_timezone=default_timezone, now=at,
                         new_schedule=False)  # fmt: skip
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"]) or "job"
                message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
                problems.append(f"job {key!r}, field {where!r}: {message}")
            continue
        except JobValidationError as exc:
            field = _CONFIG_FIELDS.get(exc.field, exc.field)
            problems.append(f"job {key!r}, field {field!r}: {exc.message}")
            continue
        specs.append(spec)
    if problems:
        raise JobsConfigError(source, problems)
    return tuple(specs)


# Job fields as the jobs file names them.
_CONFIG_FIELDS = {
    "trigger.expression": "cron",
    "trigger.run_at": "at",
    "trigger": "cron",
    "payload.text": "text",
    "payload.phone_number_id": "phone_number_id",
}


def load_jobs_file(
    path: Path | str | None, *, default_timezone: str = "UTC", now: float | None = None
) -> tuple[JobSpec, ...]:
    """The jobs of the file at `path`; None or an absent file: none."""
    if path is None:
        return ()
    file = Path(path)
    if not file.exists():
        return ()
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise JobsConfigError(str(file), [f"not valid YAML: {exc}"]) from None
    return parse_jobs(data, source=str(file), default_timezone=default_timezone, now=now)
