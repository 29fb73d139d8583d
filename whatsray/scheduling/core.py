"""`SchedulerCore`: jobs in DuckDB (the source of truth), APScheduler as the alarm clock, and the
exactly-once ledger of runs in between. Ray-free: the Scheduler actor is a thin shell around it.

A run happens in three steps, each safe to repeat:

1. **record** `job_runs` row `pending` (insert-if-absent on the run id, `<job id>@<fire time>`);
2. **dispatch**: a reminder's event is appended to its chat's inbox partition with the run id as
   its idempotency key (the inbox stores it once); a system job's task runs here;
3. **settle** the row (`dispatched`, `done` or `failed`).

Every wake-up (a fire time, a deferred run coming due, the periodic sweep, and the start after a
crash) calls `reconcile(job)`, which first re-dispatches the job's pending runs that are due (a
crash between steps 1 and 3: the inbox dedupes a second append), then plans the fire times since
the newest recorded run (`planner.plan_runs`: misfire grace, coalescing, quiet hours) and records
and dispatches them. One lock per job keeps two wake-ups of a job from interleaving. So a
restarted scheduler never makes a run twice (its id is recorded before any dispatch) and never
forgets one (fire times are counted from the ledger, not from APScheduler's memory).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from whatsray import metrics
from whatsray.scheduling.config_jobs import CONFIG_JOB_PREFIX, spec_job
from whatsray.scheduling.errors import JobConflictError, SchedulingError, UnknownJobError
from whatsray.scheduling.models import Job, JobKind, JobPatch, JobSpec, NextRun
from whatsray.scheduling.planner import next_run_at, plan_runs
from whatsray.scheduling.ports import EventSink, JobStorePort
from whatsray.scheduling.system import SystemTasks
from whatsray.scheduling.triggers import build_trigger, zone
from whatsray.scheduling.validation import GREETING_TASK, validate_job
from whatsray.session.scheduled import scheduled_event
from whatsray.store.job_records import JobRunRecord
from whatsray.whatsapp.events import ChatKey

__all__ = ["SchedulerCore", "new_job_id"]

log = logging.getLogger(__name__)

SWEEP_JOB_ID = "whatsray:sweep"
_DUE = "#due@"  # a deferred run's timer is "<job id>#due@<time>"
_FAN_OUT_BATCH = 200  # greeting inputs appended per inbox call


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex[:16]}"


class SchedulerCore:
    """Implements `JobsPort`. `timers=False` leaves APScheduler out: a test then drives
    `reconcile` / `reconcile_all` itself, on its own clock."""

    def __init__(
        self,
        store: JobStorePort,
        sink: EventSink,
        *,
        default_timezone: str = "UTC",
        system: SystemTasks | None = None,
        system_jobs: Sequence[JobSpec] = (),
        now: Callable[[], float] = time.time,
        timers: bool = True,
        sweep_every_s: float = 30.0,
        new_id: Callable[[], str] = new_job_id,
        config_jobs: Sequence[JobSpec] = (),
    ) -> None:
        zone(default_timezone)  # an unknown default fails at construction, not at a fire time
        self._store = store
        self._sink = sink
        self._tz = default_timezone
        self._system = system
        self._system_jobs = tuple(system_jobs)
        self._config_jobs = tuple(config_jobs)
        self._now = now
        self._timers = timers
        self._sweep_every_s = sweep_every_s
        self._new_id = new_id
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._aps: Any = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the system jobs, catch up (re-dispatch, missed fire times), arm the timers."""
        for spec in self._system_jobs:
            await self._ensure_system_job(spec)
        await self._apply_config_jobs()
        if self._timers:
            self._aps = AsyncIOScheduler(timezone=UTC)
            self._aps.start()
        jobs = await self._store.list_jobs()
        for record in jobs:
            await self._reconcile_safely(record.id)
        for record in jobs:
            self._arm(Job.from_record(record))
        if self._aps is not None:
            self._aps.add_job(
                self._sweep,
                IntervalTrigger(seconds=self._sweep_every_s, timezone=UTC),
                id=SWEEP_JOB_ID,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
            )

    async def close(self) -> None:
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=False)
        self._aps = None

    async def _ensure_system_job(self, spec: JobSpec) -> None:
        job = self._new_job(spec, self._now())
        validate_job(job, default_timezone=self._tz, now=self._now(), new_schedule=False)
        if await self._store.insert_job(job.to_record()):
            log.info("registered system job %s", job.id)

    async def _apply_config_jobs(self) -> None:
        """The jobs file wins at start (docs/scheduler.md, "Jobs from the configs"): a new job
        is created, a changed one updated to the file's definition, and a `config:` job that is
        no longer in the file is stopped. A job that cannot be applied is logged and skipped."""
        declared = {spec.id for spec in self._config_jobs}
        for spec in self._config_jobs:
            try:
                await self._apply_config_job(spec)
            except SchedulingError as exc:
                log.error("jobs file: job %s not applied: %s", spec.id, exc)
        for record in await self._store.list_jobs():
            stale = record.id.startswith(CONFIG_JOB_PREFIX) and record.id not in declared
            if stale and record.enabled:
                log.info("job %s is no longer in the jobs file: stopped", record.id)
                await self.stop_job(record.id)

    async def _apply_config_job(self, spec: JobSpec) -> None:
        now = self._now()
        job = self._new_job(spec, now)
        validate_job(job, default_timezone=self._tz, now=now, new_schedule=False)
        record = await self._store.get_job(job.id)
        if record is None:
            if await self._store.insert_job(job.to_record()):
                log.info("registered job %s from the jobs file", job.id)
            return
        current = Job.from_record(record)
        if current.definition() == job.definition():
            return
        if (current.kind, current.chat) != (job.kind, job.chat):  # a patch cannot change these
            await self._store.delete_job(job.id)
            await self._store.insert_job(job.to_record())
        else:
            fields = ("name", "payload", "trigger", "timezone", "quiet_hours", "misfire", "enabled")
            changed = {f: getattr(job, f) for f in fields if getattr(job, f) != getattr(current, f)}
            await self.update_job(job.id, JobPatch.model_validate(changed))
        log.info("job %s updated to the jobs file's definition", job.id)

    # -- JobsPort -----------------------------------------------------------------------------

    async def create_job(self, spec: JobSpec) -> Job:
        now = self._now()
        job = self._new_job(spec, now)
        validate_job(job, default_timezone=self._tz, now=now, new_schedule=True)
        if not await self._store.insert_job(job.to_record()):
            existing = await self._load(job.id)
            if existing.definition() != job.definition():
                raise JobConflictError(f"job id {job.id!r} is taken by another definition")
            return await self._view(existing)  # a retried create
        self._arm(job)
        return await self._view(job)

    async def list_jobs(self, kind: JobKind | None = None, chat: str | None = None) -> list[Job]:
        records = await self._store.list_jobs(kind=kind, chat=chat)
        return [await self._view(Job.from_record(r)) for r in records]

    async def get_job(self, job_id: str) -> Job:
        return await self._view(await self._load(job_id))

    async def update_job(self, job_id: str, patch: JobPatch) -> Job:
        async with self._locks[job_id]:
            current = await self._load(job_id)
            now = self._now()
            changes: dict[str, Any] = {
                name: getattr(patch, name) for name in patch.model_fields_set
            }
            rescheduled = bool({"trigger", "timezone"} & changes.keys())
            restarted = changes.get("enabled") is True and not current.enabled
            if rescheduled or restarted:
                changes["active_since"] = now
            job = current.model_copy(update={**changes, "updated_at": now})
            validate_job(job, default_timezone=self._tz, now=now, new_schedule="trigger" in changes)
            if not await self._store.replace_job(job.to_record()):
                raise UnknownJobError(job_id)
            if not job.enabled or rescheduled:
                await self._skip_waiting_runs(job, "stopped" if not job.enabled else "rescheduled")
        self._arm(job)
        return await self._view(job)

    async def delete_job(self, job_id: str) -> None:
        async with self._locks[job_id]:
            job = await self._load(job_id)
            if job.kind == "system":
                raise JobConflictError(
                    f"{job_id!r} is a system job: stop it instead (it is registered at every start)"
                )
            if not await self._store.delete_job(job_id):
                raise UnknownJobError(job_id)
        self._disarm(job_id)

    async def start_job(self, job_id: str) -> Job:
        return await self.update_job(job_id, JobPatch(enabled=True))

    async def stop_job(self, job_id: str) -> Job:
        return await self.update_job(job_id, JobPatch(enabled=False))

    async def job_runs(self, job_id: str, limit: int = 50, offset: int = 0) -> list[JobRunRecord]:
        await self._load(job_id)
        return await self._store.list_job_runs(job_id, limit, offset)

    # -- the exactly-once loop ------------------------------------------------------------------

    async def reconcile_all(self) -> None:
        for record in await self._store.list_jobs():
            await self._reconcile_safely(record.id)

    async def reconcile(self, job_id: str) -> None:
        """Make every run the job owes now, each once (see the module's docstring)."""
        async with self._locks[job_id]:
            record = await self._store.get_job(job_id)
            if record is None:
                return
            job = Job.from_record(record)
            now = self._now()
            deferred_waiting = False
            for run in await self._store.pending_job_runs(job_id):
                if run.due_at <= now:
                    await self._dispatch(job, run)
                else:
                    deferred_waiting = True
                    self._wake_at(job_id, run.due_at)
            planned = plan_runs(
                job,
                last_scheduled=await self._store.last_job_run_at(job_id),
                deferred_waiting=deferred_waiting,
                now=now,
                default_timezone=self._tz,
            )
            for plan in planned:
                run = JobRunRecord(
                    run_id=plan.run_id,
                    job_id=job_id,
                    scheduled_for=plan.scheduled_for,
                    due_at=plan.due_at,
                    status=plan.status,
                    reason=plan.reason,
                    created_at=now,
                    updated_at=now,
                )
                if not await self._store.record_job_run(run):
                    continue  # recorded before: whoever recorded it dispatches it
                if plan.status == "skipped":
                    metrics.scheduler_runs.inc(kind=_run_kind(job), result="skipped")
                    log.info("job %s: run %s skipped (%s)", job_id, plan.run_id, plan.reason)
                elif plan.due_at <= now:
                    await self._dispatch(job, run)
                else:
                    self._wake_at(job_id, plan.due_at)

    async def _dispatch(self, job: Job, run: JobRunRecord) -> None:
        kind = _run_kind(job)
        try:
            if kind == "greeting":
                result = await self._fan_out(job, run)
            elif job.kind == "system":
                result = await self._run_system(job, run)
            else:
                result = await self._dispatch_reminder(job, run)
        except Exception:
            # The run stays pending: the next wake-up (at the latest the sweep) dispatches it.
            result = "failed"
            log.warning("job %s: run %s not dispatched yet", job.id, run.run_id, exc_info=True)
        metrics.scheduler_runs.inc(kind=kind, result=result)
        lag = self._now() - run.due_at
        metrics.scheduler_lag_seconds.observe(lag, kind=kind, result=result)

    async def _dispatch_reminder(self, job: Job, run: JobRunRecord) -> str:
        assert job.chat is not None
        event = scheduled_event(
            run_id=run.run_id,
            job_id=job.id,
            job_name=job.name,
            chat=ChatKey.parse(job.chat),
            instruction=str(job.payload["text"]),
            scheduled_for=run.scheduled_for,
            due_at=run.due_at,
        )
        result = await self._sink.append([event])
        entry_id = result.outcomes[0].entry_id if result.outcomes else None
        await self._store.settle_job_run(run.run_id, "dispatched", entry_id=entry_id)
        return "dispatched"

    async def _fan_out(self, job: Job, run: JobRunRecord) -> str:
        """A greeting run: one reminder-style input per opted-in chat, each with the key
        `<run id>:<chat>`, so the inbox stores it once per chat and run however often a crash
        makes the run dispatch again. Settled `done` only when every chat's input is in."""
        number = job.payload.get("phone_number_id")
        chats = await self._store.opted_in_chats(None if number is None else str(number))
        events = [
            scheduled_event(
                run_id=f"{run.run_id}:{chat}",
                job_id=job.id,
                job_name=job.name,
                chat=ChatKey.parse(chat),
                instruction=str(job.payload["text"]),
                scheduled_for=run.scheduled_for,
                due_at=run.due_at,
            )
            for chat in chats
        ]
        duplicates = 0
        for start in range(0, len(events), _FAN_OUT_BATCH):
            result = await self._sink.append(events[start : start + _FAN_OUT_BATCH])
            duplicates += len(result.duplicates)
        await self._store.settle_job_run(
            run.run_id, "done", result={"chats": len(chats), "duplicates": duplicates}
        )
        return "done"

    async def _run_system(self, job: Job, run: JobRunRecord) -> str:
        if self._system is None:
            await self._store.settle_job_run(run.run_id, "failed", reason="no system tasks here")
            return "failed"
        try:
            result = await self._system.run(job.payload)
        except Exception as exc:
            log.exception("system job %s failed", job.id)
            await self._store.settle_job_run(
                run.run_id, "failed", reason=f"{type(exc).__name__}: {exc}"
            )
            return "failed"
        await self._store.settle_job_run(run.run_id, "done", result=result)
        return "done"

    async def _skip_waiting_runs(self, job: Job, reason: str) -> None:
        """Runs still waiting for the end of quiet hours are not made for a stopped or
        rescheduled job."""
        now = self._now()
        for run in await self._store.pending_job_runs(job.id):
            if run.due_at > now and await self._store.settle_job_run(
                run.run_id, "skipped", reason=reason
            ):
                metrics.scheduler_runs.inc(kind=_run_kind(job), result="skipped")

    async def _reconcile_safely(self, job_id: str) -> None:
        try:
            await self.reconcile(job_id)
        except Exception:  # a store outage: the next wake-up tries again
            log.exception("job %s: reconcile failed", job_id)

    async def _wake(self, job_id: str) -> None:
        await self._reconcile_safely(job_id)

    async def _sweep(self) -> None:
        try:
            await self.reconcile_all()
        except Exception:
            log.exception("scheduler sweep failed")

    # -- APScheduler: the alarm clock ---------------------------------------------------------

    def _arm(self, job: Job) -> None:
        if self._aps is None:
            return
        self._disarm(job.id)
        if not job.enabled:
            return
        trigger = build_trigger(job.trigger, zone(job.timezone or self._tz), job.active_since)
        self._aps.add_job(
            self._wake,
            trigger,
            args=(job.id,),
            id=job.id,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=None,  # always wake: the planner applies the job's policy
            max_instances=1,
        )

    def _disarm(self, job_id: str) -> None:
        if self._aps is not None and self._aps.get_job(job_id) is not None:
            self._aps.remove_job(job_id)

    def _wake_at(self, job_id: str, due_at: float) -> None:
        if self._aps is None:
            return
        self._aps.add_job(
            self._wake,
            DateTrigger(run_date=datetime.fromtimestamp(due_at, UTC)),
            args=(job_id,),
            id=f"{job_id}{_DUE}{due_at}",
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def next_runs(self, limit: int = 5) -> list[NextRun]:
        """The jobs whose timers fire soonest, soonest first: from the armed timers (no scan
        of the jobs), each named from the store (`limit` reads at most)."""
        if self._aps is None:
            return []
        due: dict[str, float] = {}
        for timer in self._aps.get_jobs():
            if timer.id == SWEEP_JOB_ID or timer.next_run_time is None:
                continue
            job_id = timer.id.partition(_DUE)[0]
            at = timer.next_run_time.timestamp()
            due[job_id] = min(at, due.get(job_id, at))
        soonest = sorted(due.items(), key=lambda item: item[1])[:limit]
        records = await asyncio.gather(*(self._store.get_job(job_id) for job_id, _ in soonest))
        return [
            NextRun(job_id=record.id, name=record.name, kind=record.kind, chat=record.chat, at=at)
            for (_, at), record in zip(soonest, records, strict=True)
            if record is not None  # deleted since
        ]

    # -- helpers -------------------------------------------------------------------------------

    def _new_job(self, spec: JobSpec, now: float) -> Job:
        return spec_job(spec if spec.id else spec.model_copy(update={"id": self._new_id()}), now)

    async def _load(self, job_id: str) -> Job:
        record = await self._store.get_job(job_id)
        if record is None:
            raise UnknownJobError(job_id)
        return Job.from_record(record)

    async def _view(self, job: Job) -> Job:
        last = await self._store.last_job_run_at(job.id)
        upcoming = next_run_at(job, last_scheduled=last, now=self._now(), default_timezone=self._tz)
        return job.model_copy(update={"next_run_at": upcoming})


def _run_kind(job: Job) -> str:
    """The `kind` label of a run: reminder, system, or greeting (the system job that greets)."""
    greeting = job.kind == "system" and job.payload.get("task") == GREETING_TASK
    return "greeting" if greeting else job.kind
