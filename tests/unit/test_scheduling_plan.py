"""Schedule math on a fake clock: fire times, misfire grace, coalescing, quiet hours, run ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from whatsray.scheduling import (
    CronSpec,
    DateSpec,
    IntervalSpec,
    Job,
    Misfire,
    QuietHours,
    plan_runs,
    run_id_for,
)
from whatsray.scheduling.planner import MAX_CATCH_UP, next_run_at
from whatsray.scheduling.triggers import build_trigger, crontab_fields, fire_times, quiet_until

T0 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC).timestamp()  # a Monday, 08:00 UTC
BERLIN = ZoneInfo("Europe/Berlin")


def job(**changes: Any) -> Job:
    values: dict[str, Any] = {
        "id": "j1",
        "name": "test",
        "kind": "reminder",
        "chat": "106540352242922:15551234567",
        "payload": {"text": "drink water"},
        "trigger": IntervalSpec(seconds=60),
        "timezone": "UTC",
        "quiet_hours": None,
        "misfire": Misfire(grace_s=30, coalesce=True),
        "enabled": True,
        "active_since": T0,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(changes)
    return Job(**values)


def plan(j: Job, now: float, last: float | None = None, waiting: bool = False) -> list[Any]:
    return plan_runs(
        j, last_scheduled=last, deferred_waiting=waiting, now=now, default_timezone="UTC"
    )


def at(text: str, tz: ZoneInfo | None = None) -> float:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=tz or UTC).timestamp()


# -- run ids and fire times ------------------------------------------------------------------


def test_the_run_id_is_the_job_id_and_the_fire_time_in_iso_utc() -> None:
    assert run_id_for("j1", T0) == "j1@2025-06-02T08:00:00Z"
    assert run_id_for("j1", T0 + 0.25) == "j1@2025-06-02T08:00:00.250000Z"


def test_crontab_days_of_week_count_from_sunday_like_cron() -> None:
    assert crontab_fields("0 9 * * 1-5")["day_of_week"] == "mon,tue,wed,thu,fri"
    assert crontab_fields("0 9 * * 0,7")["day_of_week"] == "sun"
    assert crontab_fields("0 9 * * */2")["day_of_week"] == "sun,tue,thu,sat"
    assert crontab_fields("0 9 * * fri-sat")["day_of_week"] == "fri,sat"
    with pytest.raises(ValueError, match="first day comes last"):
        crontab_fields("0 9 * * 5-1")
    with pytest.raises(ValueError, match="day of week"):
        crontab_fields("0 9 * * funday")


def test_a_weekday_cron_fires_monday_to_friday_at_nine_in_its_zone() -> None:
    trigger = build_trigger(CronSpec(expression="0 9 * * 1-5"), BERLIN, T0)
    start = at("2025-06-01T00:00:00", BERLIN)  # a Sunday
    times = fire_times(trigger, BERLIN, start, start + 9 * 86400, 100)
    local = [datetime.fromtimestamp(t, BERLIN) for t in times]
    assert [d.strftime("%a %H:%M") for d in local] == [
        "Mon 09:00",
        "Tue 09:00",
        "Wed 09:00",
        "Thu 09:00",
        "Fri 09:00",
        "Mon 09:00",
    ]
    assert local[0].utcoffset() is not None and local[0].utcoffset().total_seconds() == 7200


def test_fire_times_are_strictly_after_the_lower_bound() -> None:
    trigger = build_trigger(IntervalSpec(seconds=60), ZoneInfo("UTC"), T0)
    tz = ZoneInfo("UTC")
    assert fire_times(trigger, tz, T0, T0 + 180, 10) == [T0 + 60, T0 + 120, T0 + 180]
    assert fire_times(trigger, tz, T0 + 60, T0 + 179, 10) == [T0 + 120]


def test_a_naive_one_shot_date_is_read_in_the_jobs_zone() -> None:
    j = job(trigger=DateSpec(run_at=datetime(2025, 6, 2, 12, 0)), timezone="Europe/Berlin")
    [run] = plan(j, now=at("2025-06-02T10:00:10"))
    assert run.scheduled_for == at("2025-06-02T10:00:00")  # 12:00 in Berlin is 10:00 UTC
    assert plan(j, now=at("2025-06-02T11:00:00"), last=run.scheduled_for) == []


# -- misfire and coalescing --------------------------------------------------------------------


def test_nothing_is_due_before_the_first_fire_time() -> None:
    assert plan(job(), now=T0 + 59) == []


def test_a_run_on_time_is_pending() -> None:
    [run] = plan(job(), now=T0 + 61)
    assert (run.status, run.scheduled_for, run.due_at) == ("pending", T0 + 60, T0 + 60)
    assert run.run_id == "j1@2025-06-02T08:01:00Z"


def test_after_the_last_recorded_run_nothing_is_planned_twice() -> None:
    assert plan(job(), now=T0 + 61, last=T0 + 60) == []
    [run] = plan(job(), now=T0 + 121, last=T0 + 60)
    assert run.scheduled_for == T0 + 120


def test_missed_runs_within_the_grace_coalesce_into_the_newest() -> None:
    j = job(trigger=IntervalSpec(seconds=10), misfire=Misfire(grace_s=60, coalesce=True))
    runs = plan(j, now=T0 + 35)
    assert [(r.scheduled_for - T0, r.status, r.reason) for r in runs] == [
        (10, "skipped", "coalesced"),
        (20, "skipped", "coalesced"),
        (30, "pending", None),
    ]


def test_without_coalescing_each_missed_run_within_the_grace_fires() -> None:
    j = job(trigger=IntervalSpec(seconds=10), misfire=Misfire(grace_s=60, coalesce=False))
    runs = plan(j, now=T0 + 35)
    assert [r.status for r in runs] == ["pending", "pending", "pending"]


def test_runs_beyond_the_grace_are_skipped_and_the_one_within_fires() -> None:
    j = job(trigger=IntervalSpec(seconds=60), misfire=Misfire(grace_s=30, coalesce=False))
    runs = plan(j, now=T0 + 200)
    assert [(r.scheduled_for - T0, r.status) for r in runs] == [
        (60, "skipped"),
        (120, "skipped"),
        (180, "pending"),
    ]
    assert runs[0].reason is not None and runs[0].reason.startswith("misfired: 140 s late")


def test_a_one_shot_missed_beyond_its_grace_is_skipped_not_fired() -> None:
    j = job(trigger=DateSpec(run_at=datetime(2025, 6, 2, 9, 0, tzinfo=UTC)))
    [run] = plan(j, now=at("2025-06-02T09:00:31"))
    assert run.status == "skipped"
    [run] = plan(j, now=at("2025-06-02T09:00:30"))
    assert run.status == "pending"


def test_a_stopped_job_owes_nothing() -> None:
    assert plan(job(enabled=False), now=T0 + 1000) == []
    assert (
        next_run_at(job(enabled=False), last_scheduled=None, now=T0, default_timezone="UTC") is None
    )


def test_far_behind_only_the_newest_fire_times_are_looked_at() -> None:
    j = job(trigger=IntervalSpec(seconds=1), misfire=Misfire(grace_s=5, coalesce=False))
    runs = plan(j, now=T0 + 10 * MAX_CATCH_UP)
    pending = [r for r in runs if r.status == "pending"]
    assert [r.scheduled_for - T0 for r in pending] == [float(s) for s in range(9995, 10001)]
    assert len(runs) < 20  # not ten thousand records


def test_next_run_at_follows_the_last_recorded_run() -> None:
    assert next_run_at(job(), last_scheduled=None, now=T0 + 5, default_timezone="UTC") == T0 + 60
    assert next_run_at(job(), last_scheduled=T0 + 60, now=T0 + 59, default_timezone="UTC") == (
        T0 + 120
    )


# -- quiet hours ---------------------------------------------------------------------------------

QUIET = QuietHours(start="22:00", end="08:00")


def test_quiet_hours_cross_midnight_in_the_jobs_zone() -> None:
    assert quiet_until(at("2025-06-02T23:30:00", BERLIN), QUIET, BERLIN) == at(
        "2025-06-03T08:00:00", BERLIN
    )
    assert quiet_until(at("2025-06-03T03:00:00", BERLIN), QUIET, BERLIN) == at(
        "2025-06-03T08:00:00", BERLIN
    )
    assert quiet_until(at("2025-06-03T08:00:00", BERLIN), QUIET, BERLIN) is None
    assert quiet_until(at("2025-06-02T21:59:00", BERLIN), QUIET, BERLIN) is None
    lunch = QuietHours(start="12:00", end="14:00")
    assert quiet_until(at("2025-06-02T13:00:00", BERLIN), lunch, BERLIN) == at(
        "2025-06-02T14:00:00", BERLIN
    )


def test_a_run_in_quiet_hours_is_deferred_to_their_end() -> None:
    j = job(
        trigger=CronSpec(expression="30 23 * * *"),
        timezone="Europe/Berlin",
        quiet_hours=QUIET,
        active_since=at("2025-06-02T00:00:00", BERLIN),
    )
    fired = at("2025-06-02T23:30:00", BERLIN)
    [run] = plan(j, now=fired + 1)
    assert run.status == "pending" and run.scheduled_for == fired
    assert run.due_at == at("2025-06-03T08:00:00", BERLIN)
    assert run.run_id == run_id_for("j1", fired)  # the id keeps the fire time


def test_a_deferred_run_coalesces_with_one_already_waiting() -> None:
    j = job(
        trigger=CronSpec(expression="0 * * * *"),
        timezone="Europe/Berlin",
        quiet_hours=QUIET,
        active_since=at("2025-06-02T22:30:00", BERLIN),
    )
    [first] = plan(j, now=at("2025-06-02T23:00:01", BERLIN))
    assert first.status == "pending"
    [second] = plan(
        j, now=at("2025-06-03T00:00:01", BERLIN), last=first.scheduled_for, waiting=True
    )
    assert (second.status, second.reason) == ("skipped", "coalesced")


def test_quiet_hours_with_skip_drop_the_run() -> None:
    j = job(
        trigger=CronSpec(expression="30 23 * * *"),
        timezone="Europe/Berlin",
        quiet_hours=QuietHours(start="22:00", end="08:00", policy="skip"),
        active_since=at("2025-06-02T00:00:00", BERLIN),
    )
    [run] = plan(j, now=at("2025-06-02T23:30:01", BERLIN))
    assert (run.status, run.reason) == ("skipped", "quiet_hours")


def test_quiet_hours_do_not_apply_to_system_jobs() -> None:
    j = job(
        kind="system",
        chat=None,
        payload={"task": "daily_summary"},
        trigger=CronSpec(expression="30 23 * * *"),
        timezone="Europe/Berlin",
        quiet_hours=QUIET,  # refused by validation; even if present, not applied
        active_since=at("2025-06-02T00:00:00", BERLIN),
    )
    [run] = plan(j, now=at("2025-06-02T23:30:01", BERLIN))
    assert run.due_at == run.scheduled_for
