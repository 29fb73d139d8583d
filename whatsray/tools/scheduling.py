"""Reminder tools (`schedule_reminder`, `list_reminders`, `update_reminder`, `cancel_reminder`)
and the greeting opt-in tools (`subscribe_greetings`, `unsubscribe_greetings`).

The reminder tools act on reminder jobs of the turn's chat only, through the scheduler's
`JobsPort` (`ctx.services.jobs`): a job of another chat, or a system job, is "not found" for them,
whatever id the model passes. A reminder's job id derives from the chat, the turn id and the
number of reminders this turn created before it (`rem-<hash>`), so a turn retried after a crash
finds the job its first attempt made instead of making a second one. Times are local date-times
(`2026-11-23T09:00`) read in the given zone, else the platform's default zone
(`WHATSRAY_DEFAULT_TIMEZONE`); the model is told the current date and time in that zone (the
`clock` flag, docs/tools.md). Every refusal (a bad time, a time in the past, an unknown id) goes
back to the model as the call's error.

The opt-in tools are also the `/subscribe` and `/unsubscribe` commands: the tool loop runs them
without the model when the user's message is exactly the command.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime
from typing import Any

from pydantic import Field

from whatsray.scheduling.errors import JobConflictError, JobValidationError, UnknownJobError
from whatsray.scheduling.models import CronSpec, DateSpec, IntervalSpec, Job, JobPatch, JobSpec
from whatsray.scheduling.ports import JobsPort
from whatsray.scheduling.triggers import aware, zone
from whatsray.tools.base import Tool, ToolArguments, ToolContext, ToolError
from whatsray.whatsapp.events import ChatKey

__all__ = [
    "CANCEL_REMINDER",
    "LIST_REMINDERS",
    "SCHEDULE_REMINDER",
    "SUBSCRIBE_GREETINGS",
    "UNSUBSCRIBE_GREETINGS",
    "UPDATE_REMINDER",
    "clock_note",
    "reminder_job_id",
]

NOT_AVAILABLE = "reminders are not available here"
_LOCAL = "%Y-%m-%d %H:%M (%A)"

# The scheduler's field names, as the tools' arguments call them.
_ARGUMENT_OF = {
    "trigger.expression": "cron",
    "trigger.run_at": "at",
    "trigger": "cron",
    "payload.text": "text",
    "timezone": "timezone",
}


def clock_note(now: float, timezone: str) -> str:
    """The line added to the system prompt of agents with clock tools: "tomorrow at 9" needs
    today's date."""
    local = datetime.fromtimestamp(now, zone(timezone))
    return (
        f"Current date and time: {local.strftime('%A, %Y-%m-%d %H:%M')} ({timezone}). "
        "Times the user gives are in this time zone unless they name another."
    )


def reminder_job_id(chat: ChatKey, turn_id: str, n: int) -> str:
    """The n-th reminder (from 0) that the tools of a turn create: the same on a retry."""
    digest = hashlib.sha256(f"{chat}|{turn_id}|{n}".encode()).hexdigest()[:20]
    return f"rem-{digest}"


def _jobs(ctx: ToolContext) -> JobsPort:
    jobs = ctx.services.jobs
    if jobs is None:
        raise ToolError(NOT_AVAILABLE)
    return jobs


def _tool_error(exc: JobValidationError) -> ToolError:
    argument = _ARGUMENT_OF.get(exc.field, exc.field)
    return ToolError(f"{argument}: {exc.message}")


def _zone_name(ctx: ToolContext, given: str | None, job: Job | None = None) -> str:
    name = (given or "").strip() or (job.timezone if job else None) or ctx.services.default_timezone
    try:
        zone(name)
    except ValueError as exc:
        raise ToolError(f"timezone: {exc}") from None
    return name


def _run_at(ctx: ToolContext, text: str, timezone: str) -> datetime:
    """A local date-time the model wrote, checked to be a moment in the future."""
    raw = text.strip()
    normal = raw.replace(" ", "T", 1) if "T" not in raw else raw
    try:
        moment = datetime.fromisoformat(normal)
    except ValueError:
        raise ToolError(
            f"at: not a date and time: {raw!r} (write it like 2026-11-23T09:00)"
        ) from None
    tz = zone(timezone)
    if aware(moment, tz).timestamp() <= ctx.now():
        now = datetime.fromtimestamp(ctx.now(), tz).strftime(_LOCAL)
        raise ToolError(f"at: {raw} is in the past (it is now {now} in {timezone})")
    return moment


def _trigger(
    ctx: ToolContext, at: str | None, cron: str | None, timezone: str
) -> DateSpec | CronSpec:
    if at and cron:
        raise ToolError("give either at (once) or cron (repeating), not both")
    if cron:
        return CronSpec(expression=cron.strip())
    if at:
        return DateSpec(run_at=_run_at(ctx, at, timezone))
    raise ToolError("say when: at (a date and time, once) or cron (repeating)")


def _when(job: Job) -> str:
    match job.trigger:
        case DateSpec():
            return f"once at {job.trigger.run_at.strftime('%Y-%m-%d %H:%M')}"
        case CronSpec():
            return f"repeating (cron {job.trigger.expression})"
        case IntervalSpec():
            return f"every {job.trigger.seconds} s"
    return "?"


def _view(job: Job, default_timezone: str) -> dict[str, Any]:
    tz = job.timezone or default_timezone
    upcoming = job.next_run_at
    return {
        "id": job.id,
        "text": str(job.payload.get("text", "")),
        "when": _when(job),
        "timezone": tz,
        "next_run": (
            None
            if upcoming is None
            else datetime.fromtimestamp(upcoming, zone(tz)).strftime(_LOCAL)
        ),
        "active": job.enabled and upcoming is not None,
    }


def _is_this_chats(job: Job, chat: ChatKey) -> bool:
    if job.kind != "reminder" or job.chat is None:
        return False
    try:
        return ChatKey.parse(job.chat) == chat
    except ValueError:
        return False


async def _own_reminder(ctx: ToolContext, jobs: JobsPort, job_id: str) -> Job:
    """The reminder `job_id` if it is this chat's; "not found" for anything else."""
    missing = ToolError(f"no reminder {job_id!r} in this chat (list_reminders shows them)")
    try:
        job = await jobs.get_job(job_id.strip())
    except UnknownJobError:
        raise missing from None
    if not _is_this_chats(job, ctx.chat):
        raise missing  # another chat's job, or a system job: never acted on, never revealed
    return job


# --- schedule_reminder ---------------------------------------------------------------------------


# The forms of `at` and `cron`, also in the schema the model sees: engines that decode under the
# schema (vLLM with `tool_choice="required"`) then can only write a date-time or a cron line.
AT_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?$"
_CRON_FIELD = r"(\*|\d{1,2}(-\d{1,2})?(,\d{1,2}(-\d{1,2})?){0,6})(/\d{1,2})?"
_CRON_DAYS = r"(\*|[0-7a-z]{1,3}(-[0-7a-z]{1,3})?(,[0-7a-z]{1,3}(-[0-7a-z]{1,3})?){0,6})(/\d)?"
CRON_PATTERN = f"^{_CRON_FIELD} {_CRON_FIELD} {_CRON_FIELD} {_CRON_FIELD} {_CRON_DAYS}$"
MAX_TOOL_TEXT = 300  # a reminder's words; a small model that rambles is cut short by the schema


class ScheduleReminderArgs(ToolArguments):
    text: str = Field(
        min_length=1,
        max_length=MAX_TOOL_TEXT,
        description="What to remind the user of, e.g. 'call mom'.",
    )
    at: str | None = Field(
        None,
        pattern=AT_PATTERN,
        description="For a one-time reminder: the local date and time, e.g. '2026-11-23T09:00'.",
    )
    cron: str | None = Field(
        None,
        pattern=CRON_PATTERN,
        description="For a repeating reminder: a cron line 'minute hour day month weekday', "
        "e.g. '0 9 * * 1-5' (weekdays at 9:00).",
    )
    timezone: str | None = Field(
        None, description="An IANA time zone like 'Europe/Berlin'; leave empty for the default."
    )


async def schedule_reminder(args: ScheduleReminderArgs, ctx: ToolContext) -> dict[str, Any]:
    jobs = _jobs(ctx)
    text = args.text.strip()
    if not text:
        raise ToolError("text: say what to remind the user of")
    timezone = _zone_name(ctx, args.timezone)
    trigger = _trigger(ctx, args.at, args.cron, timezone)
    # Only a valid reminder takes a number: a retry that skips an earlier mistake of the model
    # still gives its n-th reminder the same id.
    n = ctx.effects.reminders
    ctx.effects.reminders += 1
    job_id = reminder_job_id(ctx.chat, ctx.turn_id, n)
    # A retried turn: its first attempt made this job already (perhaps with other words).
    try:
        existing = await jobs.get_job(job_id)
    except UnknownJobError:
        existing = None
    if existing is not None and _is_this_chats(existing, ctx.chat):
        return {"scheduled": True, "repeat": True, **_view(existing, ctx.services.default_timezone)}
    spec = JobSpec(
        id=job_id,
        name=f"Reminder: {text[:80]}",
        kind="reminder",
        chat=str(ctx.chat),
        payload={"text": text},
        trigger=trigger,
        timezone=timezone,
    )
    try:
        job = await jobs.create_job(spec)
    except JobValidationError as exc:
        ctx.effects.reminders -= 1  # nothing was made: the number is free again
        raise _tool_error(exc) from None
    except JobConflictError:  # created meanwhile by another attempt of this turn
        job = await _own_reminder(ctx, jobs, job_id)
    return {"scheduled": True, "repeat": False, **_view(job, ctx.services.default_timezone)}


SCHEDULE_REMINDER = Tool(
    name="schedule_reminder",
    description="Set a reminder for the user of this chat: at a date and time (at), or "
    "repeating (cron). When it is due you are asked to write the reminder to the user.",
    arguments=ScheduleReminderArgs,
    function=schedule_reminder,
    clock=True,
)


# --- list_reminders ------------------------------------------------------------------------------


class ListRemindersArgs(ToolArguments):
    pass


async def list_reminders(args: ListRemindersArgs, ctx: ToolContext) -> dict[str, Any]:
    jobs = _jobs(ctx)
    found = await jobs.list_jobs(kind="reminder", chat=str(ctx.chat))
    mine = [job for job in found if _is_this_chats(job, ctx.chat)]
    return {"reminders": [_view(job, ctx.services.default_timezone) for job in mine]}


LIST_REMINDERS = Tool(
    name="list_reminders",
    description="List the reminders of this chat (id, text, when, next run).",
    arguments=ListRemindersArgs,
    function=list_reminders,
    clock=True,
)


# --- update_reminder -----------------------------------------------------------------------------


class UpdateReminderArgs(ToolArguments):
    id: str = Field(min_length=1, max_length=80, description="The reminder's id.")
    text: str | None = Field(None, min_length=1, max_length=MAX_TOOL_TEXT)
    at: str | None = Field(
        None, pattern=AT_PATTERN, description="A new local date and time, e.g. '2026-11-23T10:00'."
    )
    cron: str | None = Field(
        None, pattern=CRON_PATTERN, description="A new repeating schedule (cron line)."
    )
    timezone: str | None = Field(None, description="A new IANA time zone.")


async def update_reminder(args: UpdateReminderArgs, ctx: ToolContext) -> dict[str, Any]:
    jobs = _jobs(ctx)
    job = await _own_reminder(ctx, jobs, args.id)
    changes: dict[str, Any] = {}
    if args.text is not None:
        if not args.text.strip():
            raise ToolError("text: say what to remind the user of")
        changes["payload"] = {"text": args.text.strip()}
    timezone = _zone_name(ctx, args.timezone, job)
    if args.timezone is not None:
        changes["timezone"] = timezone
    if args.at is not None or args.cron is not None:
        changes["trigger"] = _trigger(ctx, args.at, args.cron, timezone)
        if not job.enabled:
            changes["enabled"] = True  # a new time for a stopped reminder: it is wanted again
    if not changes:
        raise ToolError("nothing to change: give text, at, cron or timezone")
    try:
        updated = await jobs.update_job(job.id, JobPatch.model_validate(changes))
    except JobValidationError as exc:
        raise _tool_error(exc) from None
    except UnknownJobError:
        raise ToolError(f"no reminder {args.id!r} in this chat") from None
    return {"updated": True, **_view(updated, ctx.services.default_timezone)}


UPDATE_REMINDER = Tool(
    name="update_reminder",
    description="Change a reminder of this chat: its text, its time (at or cron) or its zone.",
    arguments=UpdateReminderArgs,
    function=update_reminder,
    clock=True,
)


# --- cancel_reminder -----------------------------------------------------------------------------


class CancelReminderArgs(ToolArguments):
    id: str = Field(min_length=1, max_length=80, description="The reminder's id.")


async def cancel_reminder(args: CancelReminderArgs, ctx: ToolContext) -> dict[str, Any]:
    jobs = _jobs(ctx)
    job = await _own_reminder(ctx, jobs, args.id)
    with contextlib.suppress(UnknownJobError):  # deleted meanwhile: the wish holds either way
        await jobs.delete_job(job.id)
    return {"cancelled": True, "id": job.id, "text": str(job.payload.get("text", ""))}


CANCEL_REMINDER = Tool(
    name="cancel_reminder",
    description="Cancel (delete) a reminder of this chat by its id.",
    arguments=CancelReminderArgs,
    function=cancel_reminder,
    clock=True,
)


# --- greeting opt-in -----------------------------------------------------------------------------


class NoArgs(ToolArguments):
    pass


async def subscribe_greetings(args: NoArgs, ctx: ToolContext) -> dict[str, Any]:
    changed = await ctx.services.set_opt_in(ctx.chat, True)
    return {"subscribed": True, "changed": changed}


async def unsubscribe_greetings(args: NoArgs, ctx: ToolContext) -> dict[str, Any]:
    changed = await ctx.services.set_opt_in(ctx.chat, False)
    return {"subscribed": False, "changed": changed}


SUBSCRIBE_GREETINGS = Tool(
    name="subscribe_greetings",
    description="Subscribe the user to our daily greeting message (when they ask for it).",
    arguments=NoArgs,
    function=subscribe_greetings,
    command="/subscribe",
    command_reply="Done: you'll get our morning greeting here. Send /unsubscribe to stop it.",
)

UNSUBSCRIBE_GREETINGS = Tool(
    name="unsubscribe_greetings",
    description="Stop the daily greeting message for the user (when they ask to stop it).",
    arguments=NoArgs,
    function=unsubscribe_greetings,
    command="/unsubscribe",
    command_reply="Done: no more greetings from us. Send /subscribe to get them again.",
)
