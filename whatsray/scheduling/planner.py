"""Which runs a job owes now: pure, so a fake clock tests every case in microseconds.

`plan_runs` looks at the fire times between the job's last recorded run (or the start of its
schedule) and now, and decides each one:

- inside quiet hours: moved to their end (`defer`: due later) or `skipped` (`skip`);
- more than the grace period late (the scheduler was down): `skipped`, reason `misfired`;
- otherwise due now: `pending` (the caller records it, then dispatches it). With `coalesce`,
  several runs due at once fire once: the newest; the others are `skipped` (`coalesced`).
  Deferred runs coalesce too: while one waits for the end of quiet hours, another is skipped.

The caller records every planned run (insert-if-absent on the run id) before it dispatches any,
so a planned run is made at most once, and the next plan starts after the newest recorded one,
so a fire time is never planned twice nor forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from whatsray.scheduling.models import Job
from whatsray.scheduling.triggers import build_trigger, fire_times, next_fire_time, quiet_until
from whatsray.scheduling.triggers import zone as zone_named

__all__ = ["MAX_CATCH_UP", "PlannedRun", "next_run_at", "plan_runs", "run_id_for"]

MAX_CATCH_UP = 1000
"""At most this many fire times are looked at in one plan (a per-second job after a week down
would have 600,000): older ones are dropped without a record, see `plan_runs`."""


def run_id_for(job_id: str, scheduled_for: float) -> str:
    """`<job id>@<fire time, ISO 8601 UTC>`: the same fire time always has the same id."""
    moment = datetime.fromtimestamp(scheduled_for, UTC)
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    return f"{job_id}@{moment.isoformat(timespec=spec).replace('+00:00', 'Z')}"


@dataclass(frozen=True, slots=True)
class PlannedRun:
    run_id: str
    scheduled_for: float
    due_at: float
    status: Literal["pending", "skipped"]
    reason: str | None = None

    @property
    def due_now(self) -> bool:
        return self.status == "pending"


def _lower_bound(job: Job, last_scheduled: float | None) -> float:
    return job.active_since if last_scheduled is None else max(job.active_since, last_scheduled)


def plan_runs(
    job: Job,
    *,
    last_scheduled: float | None,
    deferred_waiting: bool,
    now: float,
    default_timezone: str,
    limit: int = MAX_CATCH_UP,
) -> list[PlannedRun]:
    """The runs of `job` that came due since `last_scheduled` (its newest recorded fire time),
    in fire-time order. `deferred_waiting`: a run of this job already waits for the end of
    quiet hours. A stopped job owes nothing."""
    if not job.enabled:
        return []
    tz = zone_named(job.timezone or default_timezone)
    trigger = build_trigger(job.trigger, tz, job.active_since)
    after = _lower_bound(job, last_scheduled)
    grace = job.misfire.grace_s
    times = fire_times(trigger, tz, after, now, limit)
    if len(times) == limit:  # far behind: only the newest matter (the rest are past any grace)
        recent = fire_times(trigger, tz, max(after, now - grace - 1), now, limit)
        times = sorted({times[-1], *recent})
    planned: list[PlannedRun] = []
    for at in times:
        run_id = run_id_for(job.id, at)
        due = at
        if job.kind == "reminder" and job.quiet_hours is not None:
            ends = quiet_until(at, job.quiet_hours, tz)
            if ends is not None and job.quiet_hours.policy == "skip":
                planned.append(PlannedRun(run_id, at, at, "skipped", "quiet_hours"))
                continue
            due = ends if ends is not None else at
        late = now - due
        if late > grace:
            reason = f"misfired: {late:.0f} s late, grace {grace:.0f} s"
            planned.append(PlannedRun(run_id, at, due, "skipped", reason))
        else:
            planned.append(PlannedRun(run_id, at, due, "pending"))
    return _coalesced(planned, now, deferred_waiting) if job.misfire.coalesce else planned


def _coalesced(planned: list[PlannedRun], now: float, deferred_waiting: bool) -> list[PlannedRun]:
    """Keep the newest run due now, and one deferred run (none if one already waits)."""
    due_now = [p for p in planned if p.status == "pending" and p.due_at <= now]
    deferred = [p for p in planned if p.status == "pending" and p.due_at > now]
    keep = {due_now[-1].run_id} if due_now else set()
    if deferred and not deferred_waiting:
        keep.add(deferred[0].run_id)
    out = []
    for p in planned:
        if p.status == "pending" and p.run_id not in keep:
            p = PlannedRun(p.run_id, p.scheduled_for, p.due_at, "skipped", "coalesced")
        out.append(p)
    return out


def next_run_at(
    job: Job, *, last_scheduled: float | None, now: float, default_timezone: str
) -> float | None:
    """The job's next fire time after now (None: stopped, or a one-shot that has fired)."""
    if not job.enabled:
        return None
    tz = zone_named(job.timezone or default_timezone)
    trigger = build_trigger(job.trigger, tz, job.active_since)
    return next_fire_time(trigger, tz, max(now, _lower_bound(job, last_scheduled)))
