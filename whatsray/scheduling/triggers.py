"""Schedule math: APScheduler 3.x triggers built from a job, its fire times, and quiet hours.

The same trigger objects serve two purposes: `AsyncIOScheduler` uses them as the alarm clock
that wakes the scheduler at each fire time, and the planner asks them which fire times fell in an
interval (`fire_times`). So a fire time is a pure function of the job's definition: a restarted
scheduler computes the same times, and so the same run ids.

Cron expressions are standard 5-field crontab lines. APScheduler numbers the days of the week
from Monday = 0, crontab from Sunday = 0 (and 7); `crontab_fields` translates numeric days into
names, so `1-5` means Monday to Friday as everywhere else.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from whatsray.scheduling.models import CronSpec, DateSpec, IntervalSpec, QuietHours, TriggerSpec

__all__ = [
    "aware",
    "build_trigger",
    "crontab_fields",
    "fire_times",
    "next_fire_time",
    "quiet_until",
    "zone",
]

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_ONE_US = timedelta(microseconds=1)


def zone(name: str) -> ZoneInfo:
    """The IANA zone; `ValueError` naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like 'Europe/Berlin' or 'UTC')"
        ) from None


def aware(moment: datetime, tz: tzinfo) -> datetime:
    """A naive datetime is read in `tz`; an aware one is kept."""
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def _day(token: str) -> int:
    text = token.strip().lower()
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    if text[:3] in _DAYS and len(text) == 3:
        return _DAYS.index(text[:3])
    raise ValueError(f"invalid day of week {token!r} (0-7 or sun..sat)")


def _weekdays(field: str) -> str:
    """Crontab day-of-week (Sunday = 0 or 7) as the explicit day names APScheduler reads."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        if step_text and not step_text.isdigit():
            raise ValueError(f"invalid step {step_text!r} in day of week {field!r}")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"invalid step {step_text!r} in day of week {field!r}")
        if base == "*":
            low, high = 0, 6
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _day(first), _day(last)
        else:
            low = _day(base)
            high = 6 if step_text else low
        if low > high:
            raise ValueError(f"invalid day-of-week range {base!r} (the first day comes last)")
        days.update(d % 7 for d in range(low, high + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def crontab_fields(expression: str) -> dict[str, str]:
    """The APScheduler `CronTrigger` fields of a 5-field crontab line."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"expected 5 fields (minute hour day month day-of-week), got {len(fields)}"
        )
    minute, hour, day, month, day_of_week = fields
    return {
        "minute": minute,
        "hour": hour,
        "day": day,
        "month": month,
        "day_of_week": _weekdays(day_of_week),
    }


def build_trigger(spec: TriggerSpec, tz: ZoneInfo, active_since: float) -> Any:
    """The APScheduler trigger of a job's trigger (an interval counts from `start_at`, else
    from `active_since`). Raises `ValueError` for a cron expression that does not parse."""
    match spec:
        case CronSpec():
            return CronTrigger(timezone=tz, **crontab_fields(spec.expression))
        case IntervalSpec():
            start = (
                aware(spec.start_at, tz)
                if spec.start_at is not None
                else datetime.fromtimestamp(active_since, tz)
            )
            return IntervalTrigger(seconds=spec.seconds, start_date=start, timezone=tz)
        case DateSpec():
            return DateTrigger(run_date=aware(spec.run_at, tz), timezone=tz)
    raise TypeError(f"unknown trigger {spec!r}")


def fire_times(
    trigger: BaseTrigger, tz: ZoneInfo, after: float, until: float, limit: int
) -> list[float]:
    """The trigger's fire times in (`after`, `until`], oldest first, at most `limit` (the
    oldest ones: callers move `after` forward when they need the newest)."""
    out: list[float] = []
    start = datetime.fromtimestamp(after, tz) + _ONE_US
    moment: datetime | None = trigger.get_next_fire_time(None, start)
    while moment is not None and len(out) < limit:
        at = moment.timestamp()
        if at > until:
            break
        if at > after:  # a date trigger answers its date whatever `now` it is asked about
            out.append(at)
        moment = trigger.get_next_fire_time(moment, moment)
    return out


def next_fire_time(trigger: BaseTrigger, tz: ZoneInfo, after: float) -> float | None:
    """The first fire time after `after`, or None (a one-shot date that has passed)."""
    start = datetime.fromtimestamp(after, tz) + _ONE_US
    moment: datetime | None = trigger.get_next_fire_time(None, start)
    while moment is not None and moment.timestamp() <= after:
        moment = trigger.get_next_fire_time(moment, moment)
    return None if moment is None else float(moment.timestamp())


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def quiet_until(at: float, quiet: QuietHours, tz: ZoneInfo) -> float | None:
    """When the quiet period that `at` falls in ends; None when `at` is not in one."""
    local = datetime.fromtimestamp(at, tz)
    start, end = _clock(quiet.start), _clock(quiet.end)
    now = local.time().replace(tzinfo=None)
    inside = start <= now < end if start < end else (now >= start or now < end)
    if not inside:
        return None
    day: date = local.date()
    if now >= end:  # past today's end: the period ends tomorrow (it crosses midnight)
        day += timedelta(days=1)
    ends = datetime.combine(day, end, tzinfo=tz)
    return max(ends.astimezone(UTC).timestamp(), at)
