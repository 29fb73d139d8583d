"""`SchedulerCore` over a real DuckDB store on a fake clock, with "crashes" between the steps of a
run: every due run reaches the inbox exactly once, whatever dies when.

The sink stands in for the inbox: it dedupes on the idempotency key like the Lua script does (the
real inbox is used in test_scheduled_turn.py). A crash is a core that is dropped and a new one
started on the same store, which is what a restart of the Scheduler actor amounts to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.store_helpers import PNID, FakeClock, outbound
from whatsray.inbox import AppendOutcome, AppendResult, InboxUnavailable
from whatsray.outbox.ledger import OutboundRecord
from whatsray.scheduling import (
    CronSpec,
    DateSpec,
    IntervalSpec,
    JobConflictError,
    JobPatch,
    JobSpec,
    JobValidationError,
    Misfire,
    QuietHours,
    SchedulerCore,
    SystemTasks,
    UnknownJobError,
    default_system_jobs,
)
from whatsray.store import Store
from whatsray.whatsapp.events import Event, MessageEvent

T0 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC).timestamp()  # a Monday, 08:00 UTC
CHAT = f"{PNID}:15551234567"


class FakeInbox:
    """Dedupes on the idempotency key and appends, like the inbox's script. `fail` makes the
    next appends raise before storing (Redis down); `crash_after` stores, then raises (the
    scheduler died right after the append)."""

    def __init__(self) -> None:
        self.entries: dict[str, MessageEvent] = {}
        self.duplicates = 0  # appends of a key already stored: only a re-dispatch does that
        self.fail = 0
        self.crash_after = 0

    async def append(self, events: Sequence[Event]) -> AppendResult:
        if self.fail:
            self.fail -= 1
            raise InboxUnavailable("connection refused")
        outcomes = []
        for index, event in enumerate(events):
            assert isinstance(event, MessageEvent)
            key = event.idempotency_key
            duplicate = key in self.entries
            self.duplicates += duplicate
            self.entries.setdefault(key, event)
            entry_id = f"{list(self.entries).index(key) + 1}-0"
            outcomes.append(AppendOutcome(index, key, 0, entry_id, duplicate))
        if self.crash_after:
            self.crash_after -= 1
            raise RuntimeError("the process died after the append")
        return AppendResult(tuple(outcomes))

    @property
    def texts(self) -> list[str]:
        return [e.text or "" for e in self.entries.values()]


class Harness:
    def __init__(self, store: Store, clock: FakeClock, inbox: FakeInbox) -> None:
        self.store, self.clock, self.inbox = store, clock, inbox
        self.replayed: list[str] = []
        self.core = self.new_core()

    def new_core(self, **options: Any) -> SchedulerCore:
        harness = self

        class Replayer:
            async def replay_dead_letter(self, dead_letter_id: str) -> OutboundRecord:
                harness.replayed.append(dead_letter_id)
                record = await harness.store.get_outbound("o-transient")
                assert record is not None
                return record

        system = SystemTasks(self.store, replayer_for=lambda _: Replayer(), now=self.clock)
        return SchedulerCore(
            self.store, self.inbox, now=self.clock, timers=False, system=system, **options
        )

    async def restart(self, **options: Any) -> None:
        """What Ray does to a killed Scheduler actor: a new one, from the store."""
        await self.core.close()
        self.core = self.new_core(**options)
        await self.core.start()

    async def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.core.reconcile_all()

    async def runs(self, job_id: str) -> list[tuple[float, str, str | None]]:
        return [
            (r.scheduled_for - T0, r.status, r.reason)
            for r in reversed(await self.store.list_job_runs(job_id, 100))
        ]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    clock = FakeClock(T0)
    async with Store(tmp_path / "s.duckdb", now=clock) as store:
        harness = Harness(store, clock, FakeInbox())
        await harness.core.start()
        yield harness
        await harness.core.close()


def reminder(**changes: Any) -> JobSpec:
    values: dict[str, Any] = {
        "id": "water",
        "name": "Water",
        "chat": CHAT,
        "payload": {"text": "drink water"},
        "trigger": IntervalSpec(seconds=60),
        "misfire": Misfire(grace_s=30, coalesce=True),
    }
    values.update(changes)
    return JobSpec(**values)


# -- exactly once ------------------------------------------------------------------------------


async def test_each_fire_time_reaches_the_inbox_once(h: Harness) -> None:
    job = await h.core.create_job(reminder())
    assert job.next_run_at == T0 + 60
    await h.tick(59)
    assert h.inbox.entries == {}
    await h.tick(2)
    await h.core.reconcile("water")  # a second wake-up for the same fire time
    assert list(h.inbox.entries) == ["water@2025-06-02T08:01:00Z"]
    event = h.inbox.entries["water@2025-06-02T08:01:00Z"]
    assert event.text == "[Scheduled reminder] drink water" and str(event.chat) == CHAT
    [run] = await h.store.list_job_runs("water")
    assert (run.status, run.entry_id) == ("dispatched", "1-0")
    await h.tick(60)
    assert len(h.inbox.entries) == 2 and h.inbox.duplicates == 0
    assert (await h.core.get_job("water")).next_run_at == T0 + 180


async def test_an_inbox_outage_leaves_the_run_pending_until_a_later_wakeup(h: Harness) -> None:
    await h.core.create_job(reminder())
    h.inbox.fail = 1
    await h.tick(61)
    assert h.inbox.entries == {} and await h.runs("water") == [(60, "pending", None)]
    await h.tick(1)  # the sweep: the pending run goes out, late but once
    assert list(h.inbox.entries) == ["water@2025-06-02T08:01:00Z"]
    assert await h.runs("water") == [(60, "dispatched", None)]


async def test_a_crash_between_recording_and_dispatching_dispatches_on_restart(
    h: Harness,
) -> None:
    await h.core.create_job(reminder())
    h.inbox.fail = 1  # the append never happened: as if the process died before it
    await h.tick(61)
    await h.restart()
    assert h.inbox.texts == ["[Scheduled reminder] drink water"]
    assert await h.runs("water") == [(60, "dispatched", None)]


async def test_a_crash_after_the_append_does_not_deliver_twice(h: Harness) -> None:
    await h.core.create_job(reminder())
    h.inbox.crash_after = 1  # appended, then died before marking the run dispatched
    await h.tick(61)
    assert await h.runs("water") == [(60, "pending", None)]
    await h.restart()  # re-dispatches: the inbox sees the same key and stores nothing new
    assert len(h.inbox.entries) == 1 and h.inbox.duplicates == 1
    assert await h.runs("water") == [(60, "dispatched", None)]


async def test_runs_missed_while_down_coalesce_into_one(h: Harness) -> None:
    await h.core.create_job(reminder(trigger=IntervalSpec(seconds=10), misfire=Misfire(grace_s=60)))
    await h.tick(11)
    h.clock.advance(25)  # down from T0+11 to T0+36: fire times 20 and 30 were missed
    await h.restart()
    assert await h.runs("water") == [
        (10, "dispatched", None),
        (20, "skipped", "coalesced"),
        (30, "dispatched", None),
    ]
    assert len(h.inbox.entries) == 2 and h.inbox.duplicates == 0


async def test_runs_missed_beyond_the_grace_are_recorded_as_skipped(h: Harness) -> None:
    await h.core.create_job(
        reminder(trigger=IntervalSpec(seconds=60), misfire=Misfire(grace_s=30, coalesce=False))
    )
    h.clock.advance(200)  # down through 60, 120 (too late) and 180 (20 s late: within the grace)
    await h.restart()
    runs = await h.runs("water")
    assert [(at, status) for at, status, _ in runs] == [
        (60, "skipped"),
        (120, "skipped"),
        (180, "dispatched"),
    ]
    assert list(h.inbox.entries) == ["water@2025-06-02T08:03:00Z"]


async def test_a_one_shot_fires_once_even_if_restarted_after_it(h: Harness) -> None:
    run_at = datetime.fromtimestamp(T0 + 5, UTC)
    await h.core.create_job(reminder(id="once", trigger=DateSpec(run_at=run_at)))
    await h.tick(6)
    await h.restart()
    await h.tick(3600)
    assert list(h.inbox.entries) == ["once@2025-06-02T08:00:05Z"] and h.inbox.duplicates == 0
    assert (await h.core.get_job("once")).next_run_at is None


# -- quiet hours ---------------------------------------------------------------------------------


async def test_a_reminder_in_quiet_hours_goes_out_when_they_end(h: Harness) -> None:
    await h.core.create_job(
        reminder(
            trigger=CronSpec(expression="30 23 * * *"),
            timezone="UTC",
            quiet_hours=QuietHours(start="22:00", end="08:00"),
        )
    )
    h.clock.advance(15.5 * 3600 + 1)  # 23:30:01
    await h.core.reconcile_all()
    assert h.inbox.entries == {}
    [run] = await h.store.list_job_runs("water")
    assert run.status == "pending" and run.due_at == T0 + 86_400  # 08:00 the next day
    await h.restart()  # a restart in the night neither sends it nor forgets it
    assert h.inbox.entries == {}
    h.clock.advance(8.5 * 3600)  # 08:00:01
    await h.core.reconcile_all()
    [event] = h.inbox.entries.values()
    assert event.idempotency_key == "water@2025-06-02T23:30:00Z"
    assert event.timestamp is not None and event.timestamp.timestamp() == T0 + 86_400


async def test_stopping_a_job_drops_the_run_waiting_for_morning(h: Harness) -> None:
    await h.core.create_job(
        reminder(
            trigger=CronSpec(expression="30 23 * * *"),
            quiet_hours=QuietHours(start="22:00", end="08:00"),
        )
    )
    await h.tick(15.5 * 3600 + 1)
    await h.core.stop_job("water")
    await h.tick(9 * 3600)
    assert h.inbox.entries == {}
    assert await h.runs("water") == [(15.5 * 3600, "skipped", "stopped")]


# -- the JobsPort ------------------------------------------------------------------------------


async def test_create_is_idempotent_on_the_id_and_refuses_another_definition(h: Harness) -> None:
    first = await h.core.create_job(reminder())
    h.clock.advance(5)
    assert await h.core.create_job(reminder()) == first.model_copy(update={"next_run_at": T0 + 60})
    with pytest.raises(JobConflictError, match="taken by another definition"):
        await h.core.create_job(reminder(name="Tea"))
    assert [j.id for j in await h.core.list_jobs(kind="reminder")] == ["water"]


async def test_get_update_delete_and_runs_of_unknown_ids(h: Harness) -> None:
    for call in (
        h.core.get_job("ghost"),
        h.core.update_job("ghost", JobPatch(name="x")),
        h.core.delete_job("ghost"),
        h.core.start_job("ghost"),
        h.core.stop_job("ghost"),
        h.core.job_runs("ghost"),
    ):
        with pytest.raises(UnknownJobError, match="no job 'ghost'"):
            await call


async def test_a_new_trigger_starts_the_schedule_from_now(h: Harness) -> None:
    await h.core.create_job(reminder())
    h.clock.advance(100)
    job = await h.core.update_job("water", JobPatch(trigger=IntervalSpec(seconds=30)))
    assert job.active_since == T0 + 100 and job.next_run_at == T0 + 130
    await h.tick(31)
    assert list(h.inbox.entries) == ["water@2025-06-02T08:02:10Z"]  # not the old 08:01:00


async def test_an_invalid_update_changes_nothing(h: Harness) -> None:
    before = await h.core.create_job(reminder())
    with pytest.raises(JobValidationError, match="timezone"):
        await h.core.update_job("water", JobPatch(timezone="Atlantis/Capital"))
    assert await h.core.get_job("water") == before


async def test_runs_missed_while_stopped_are_not_made_up(h: Harness) -> None:
    await h.core.create_job(reminder())
    stopped = await h.core.stop_job("water")
    assert not stopped.enabled and stopped.next_run_at is None
    await h.tick(300)
    assert h.inbox.entries == {}
    started = await h.core.start_job("water")
    assert started.next_run_at == T0 + 360
    await h.tick(61)
    assert list(h.inbox.entries) == ["water@2025-06-02T08:06:00Z"]
    assert await h.core.start_job("water") == await h.core.get_job("water")  # already started


async def test_delete_removes_the_job_and_its_history(h: Harness) -> None:
    await h.core.create_job(reminder())
    await h.tick(61)
    await h.core.delete_job("water")
    with pytest.raises(UnknownJobError):
        await h.core.job_runs("water")
    await h.tick(600)
    assert len(h.inbox.entries) == 1


# -- system jobs -------------------------------------------------------------------------------


async def test_system_jobs_are_registered_once_and_cannot_be_deleted(h: Harness) -> None:
    await h.restart(system_jobs=default_system_jobs())
    await h.core.stop_job("system:cleanup")
    await h.restart(system_jobs=default_system_jobs())  # a stored one is kept as it is
    jobs = {j.id: j for j in await h.core.list_jobs(kind="system")}
    assert set(jobs) == {"system:cleanup", "system:dead-letter-sweep", "system:daily-summary"}
    assert not jobs["system:cleanup"].enabled
    with pytest.raises(JobConflictError, match="stop it instead"):
        await h.core.delete_job("system:daily-summary")


async def test_the_daily_summary_is_kept_as_the_runs_result(h: Harness) -> None:
    await h.restart(system_jobs=default_system_jobs())
    await h.tick(22 * 3600 + 1)  # 06:00 the next day
    [run] = await h.core.job_runs("system:daily-summary")
    assert run.status == "done" and run.result is not None
    assert run.result["window_h"] == 24 and "messages_in" in run.result
    assert h.inbox.entries == {}  # system jobs never go to a chat


async def test_the_dead_letter_sweep_replays_transient_ones_once(h: Harness) -> None:
    for outbound_id in ("o-transient", "o-permanent", "o-transient~replay:dl_old"):
        await h.store.record_outbound(outbound(outbound_id))
    transient = await h.store.add_dead_letter("o-transient", "retries_exhausted:GraphError", 1, "")
    await h.store.add_dead_letter("o-permanent", "permanent_error:Blocked", 131026, "")
    await h.store.add_dead_letter("o-transient~replay:dl_old", "retries_exhausted:X", 1, "")
    system = SystemTasks(h.store, replayer_for=lambda _: _never(), now=h.clock)
    assert await SystemTasks(h.store, replayer_for=None, now=h.clock).dead_letter_sweep(24) == {
        "replayed": 0,
        "considered": 0,
        "failed": 0,
        "note": "no outboxes",
    }
    assert (await system.dead_letter_sweep(24))["failed"] == 1  # a failing outbox: counted
    await h.restart(system_jobs=default_system_jobs())
    await h.tick(901)
    assert h.replayed == [transient]
    [run] = await h.core.job_runs("system:dead-letter-sweep")
    assert run.result == {"replayed": 1, "considered": 1, "failed": 0}


def _never() -> Any:
    class Broken:
        async def replay_dead_letter(self, dead_letter_id: str) -> OutboundRecord:
            raise RuntimeError("outbox down")

    return Broken()
