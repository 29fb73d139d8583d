"""What a job must mean, beyond its shape: each check raises `JobValidationError` naming the
field (`trigger.expression`, `timezone`, `chat`, `payload.text`...) and what is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whatsray.scheduling.errors import JobValidationError
from whatsray.scheduling.models import CronSpec, DateSpec, Job
from whatsray.scheduling.triggers import aware, build_trigger, zone
from whatsray.whatsapp.events import ChatKey

__all__ = ["GREETING_TASK", "MAX_REMINDER_TEXT", "SYSTEM_TASKS", "validate_job"]

MAX_REMINDER_TEXT = 2000
# A system job that fans out to the opted-in chats (docs/scheduler.md, "Greetings"): at each run,
# one reminder-style input per chat whose contact opted in, instead of a task in the scheduler.
GREETING_TASK = "greeting"
SYSTEM_TASKS = ("cleanup", "dead_letter_sweep", "daily_summary", GREETING_TASK)


def _check_chat(job: Job) -> None:
    if job.kind == "system":
        if job.chat is not None:
            raise JobValidationError("chat", "a system job runs for no chat: leave chat out")
        return
    if job.chat is None:
        raise JobValidationError("chat", "a reminder needs the chat it is for")
    try:
        key = ChatKey.parse(job.chat)
    except ValueError:
        raise JobValidationError(
            "chat",
            f"not a chat key: {job.chat!r} (expected '<phone_number_id>:<user>',"
            " e.g. '106540352242922:15551234567')",
        ) from None
    if not key.phone_number_id.isdigit():
        raise JobValidationError(
            "chat", f"the phone number id of {job.chat!r} must be digits (Meta's numeric id)"
        )


def _check_payload(job: Job) -> None:
    payload: Mapping[str, Any] = job.payload
    if job.kind == "reminder":
        extra = sorted(set(payload) - {"text"})
        if extra:
            raise JobValidationError(
                f"payload.{extra[0]}", 'unknown field (a reminder\'s payload is {"text": ...})'
            )
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            raise JobValidationError(
                "payload.text", "a reminder needs a non-empty text (what to remind the user of)"
            )
        if len(text) > MAX_REMINDER_TEXT:
            raise JobValidationError(
                "payload.text", f"at most {MAX_REMINDER_TEXT} characters, got {len(text)}"
            )
        return
    task = payload.get("task")
    if task not in SYSTEM_TASKS:
        raise JobValidationError(
            "payload.task", f"a system job's task is one of {', '.join(SYSTEM_TASKS)}; got {task!r}"
        )
    if task == GREETING_TASK:
        _check_greeting(payload)


def _check_greeting(payload: Mapping[str, Any]) -> None:
    extra = sorted(set(payload) - {"task", "text", "audience", "phone_number_id"})
    if extra:
        raise JobValidationError(
            f"payload.{extra[0]}",
            "unknown field (a greeting's payload is task, text, audience, phone_number_id)",
        )
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        raise JobValidationError("payload.text", "a greeting needs a non-empty text")
    if len(text) > MAX_REMINDER_TEXT:
        raise JobValidationError(
            "payload.text", f"at most {MAX_REMINDER_TEXT} characters, got {len(text)}"
        )
    if payload.get("audience", "opted_in") != "opted_in":
        raise JobValidationError(
            "payload.audience", f"the only audience is 'opted_in', got {payload['audience']!r}"
        )
    number = payload.get("phone_number_id")
    if number is not None and not (isinstance(number, str) and number.isdigit()):
        raise JobValidationError(
            "payload.phone_number_id", f"must be a business number's numeric id, got {number!r}"
        )


def validate_job(job: Job, *, default_timezone: str, now: float, new_schedule: bool) -> None:
    """Raise `JobValidationError` for the first problem. `new_schedule`: the trigger was just
    given (a one-shot date in the past is then refused, not silently never run)."""
    _check_chat(job)
    _check_payload(job)
    if job.kind == "system" and job.quiet_hours is not None:
        raise JobValidationError("quiet_hours", "only user-facing jobs (reminders) have them")
    try:
        tz = zone(job.timezone or default_timezone)
    except ValueError as exc:
        raise JobValidationError("timezone", str(exc)) from None
    try:
        build_trigger(job.trigger, tz, job.active_since)
    except ValueError as exc:
        if isinstance(job.trigger, CronSpec):
            raise JobValidationError(
                "trigger.expression",
                f"invalid cron expression {job.trigger.expression!r}: {exc}",
            ) from None
        raise JobValidationError("trigger", str(exc)) from None
    if new_schedule and isinstance(job.trigger, DateSpec):
        run_at = aware(job.trigger.run_at, tz).timestamp()
        if run_at <= now:
            raise JobValidationError(
                "trigger.run_at", f"{job.trigger.run_at.isoformat()} is in the past"
            )
