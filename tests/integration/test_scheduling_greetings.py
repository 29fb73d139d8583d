"""Greetings to opted-in contacts: store migration 5 (the opt-in flag), the jobs file applied at
scheduler start, and the greeting's fan-out, exactly once per opted-in chat and run, on a fake
clock with the real store and the real inbox (Valkey), across a crash between the append and the
settle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis.asyncio as aioredis

from tests.integration.store_helpers import PNID, FakeClock, write_as_an_old_version
from tests.support.metrics import MetricsProbe
from whatsray.inbox import AppendResult, Inbox
from whatsray.scheduling import SchedulerCore, parse_jobs
from whatsray.session.scheduled import SCHEDULED_PREFIX, SCHEDULED_TYPE
from whatsray.store import Store
from whatsray.store.schema import MIGRATIONS, SCHEMA_VERSION
from whatsray.whatsapp.events import ChatKey, Event, MessageEvent

T0 = datetime(2026, 3, 2, 6, 59, tzinfo=UTC).timestamp()  # a Monday, 07:59 in Berlin
OTHER_PNID = "200000000000001"
ANNA = ChatKey(phone_number_id=PNID, user="15550000001")
BEN = ChatKey(phone_number_id=PNID, user="15550000002")
CARL = ChatKey(phone_number_id=OTHER_PNID, user="15550000003")
PARTITIONS = 4


def greeting_file(**changes: Any) -> dict[str, Any]:
    greeting = {
        "cron": "0 8 * * *",
        "timezone": "Europe/Berlin",
        "text": "Wish the user a good morning.",
        "audience": "opted_in",
        **changes,
    }
    return {"jobs": {"morning_greeting": greeting}}


class CrashingSink:
    """The real inbox; `crash_after` appends, then raises (the scheduler died after the append,
    before the run was settled)."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.crash_after = 0
        self.appends = 0

    async def append(self, events: Sequence[Event]) -> AppendResult:
        result = await self.inbox.append(events)
        self.appends += 1
        if self.crash_after:
            self.crash_after -= 1
            raise RuntimeError("the process died after the append")
        return result


async def inbox_events(inbox: Inbox) -> list[MessageEvent]:
    await inbox.ensure_groups()
    out: list[MessageEvent] = []
    for partition in range(inbox.partitions):
        for entry in await inbox.read_new(partition, "test", count=1000):
            assert isinstance(entry.event, MessageEvent)
            out.append(entry.event)
    return sorted(out, key=lambda e: e.idempotency_key)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(tmp_path / "g.duckdb", now=FakeClock(T0)) as s:
        yield s


# --- migration 5 and the store's opt-in --------------------------------------------------------


async def test_migration_5_adds_opt_in_and_a_version_4_file_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    async with Store(path, migrations=MIGRATIONS[:4]) as old:
        assert old.schema_version == 4
    write_as_an_old_version(path, wamid="wamid.OLD", user=ANNA.user)
    async with Store(path) as new:
        assert 5 in new.applied_migrations and new.schema_version == SCHEMA_VERSION
        assert await new.get_contact(ANNA) is not None  # the contact survived, opted out
        assert await new.opted_in_chats() == []
        assert await new.set_opt_in(ANNA, True) is True
        assert await new.set_opt_in(ANNA, True) is False  # already in: no change
        assert await new.opted_in_chats() == [str(ANNA)]
    with duckdb.connect(str(path)) as conn:
        [(default,)] = conn.execute(
            "SELECT column_default FROM duckdb_columns()"
            " WHERE table_name = 'contacts' AND column_name = 'opted_in'"
        ).fetchall()
    assert str(default).lower() == "false"


async def test_opt_in_creates_an_unknown_contact_and_filters_by_number(store: Store) -> None:
    assert await store.set_opt_in(BEN, True)  # never wrote before: the contact is created
    contact = await store.get_contact(BEN)
    assert contact is not None and contact.phone == BEN.user
    assert await store.set_opt_in(str(CARL), True)
    assert await store.opted_in_chats() == sorted([str(BEN), str(CARL)])
    assert await store.opted_in_chats(OTHER_PNID) == [str(CARL)]
    assert await store.set_opt_in(BEN, False) is True
    assert await store.opted_in_chats(PNID) == []
    assert await store.set_opt_in(ANNA, False) is False  # created opted out: nothing changed
    with pytest.raises(TypeError):
        await store.set_opt_in(ANNA, "yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chat key"):
        await store.set_opt_in("no-colon", True)


# --- the greeting's fan-out ----------------------------------------------------------------------


async def test_the_greeting_reaches_each_opted_in_chat_once_per_run(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    clock = FakeClock(T0)
    inbox = Inbox(redis, partitions=PARTITIONS)
    sink = CrashingSink(inbox)
    async with Store(tmp_path / "s.duckdb", now=clock) as store:
        for chat in (ANNA, BEN, CARL):
            await store.set_opt_in(chat, True)
        await store.set_opt_in(BEN, False)  # changed their mind

        def core() -> SchedulerCore:
            return SchedulerCore(
                store,
                sink,
                now=clock,
                timers=False,
                config_jobs=parse_jobs(greeting_file(), now=clock()),
            )

        scheduler = core()
        await scheduler.start()
        job = await scheduler.get_job("config:morning_greeting")
        assert job.kind == "system" and job.enabled
        assert job.next_run_at == datetime(2026, 3, 2, 7, 0, tzinfo=UTC).timestamp()

        clock.advance(90)  # 08:00:30 Berlin: the run is due; the process dies after the append
        sink.crash_after = 1
        await scheduler.reconcile_all()
        [run] = await store.list_job_runs(job.id)
        assert run.status == "pending"

        scheduler = core()  # Ray restarts the actor: the pending run is dispatched again
        await scheduler.start()
        [run] = await store.list_job_runs(job.id)
        assert run.status == "done" and run.result == {"chats": 2, "duplicates": 2}
        assert sink.appends == 2

        events = await inbox_events(inbox)
        assert [e.idempotency_key for e in events] == [
            f"{run.run_id}:{ANNA}",
            f"{run.run_id}:{CARL}",
        ]
        assert [e.chat for e in events] == [ANNA, CARL]
        for event in events:
            assert event.raw_type == SCHEDULED_TYPE and event.message_id is None
            assert event.text == f"{SCHEDULED_PREFIX} Wish the user a good morning."

        await scheduler.reconcile_all()  # nothing more is due today
        clock.advance(24 * 3600)  # the next morning: one more input per chat
        await scheduler.reconcile_all()
        assert len(await store.list_job_runs(job.id)) == 2
        assert len(await inbox_events(inbox)) == 2  # the new ones only (read_new)
        await scheduler.close()


async def test_a_greeting_for_one_business_number(
    redis: aioredis.Redis, tmp_path: Path, recorded: MetricsProbe
) -> None:
    clock = FakeClock(T0)
    inbox = Inbox(redis, partitions=PARTITIONS)
    async with Store(tmp_path / "s.duckdb", now=clock) as store:
        for chat in (ANNA, CARL):
            await store.set_opt_in(chat, True)
        specs = parse_jobs(greeting_file(phone_number_id=OTHER_PNID), now=clock())
        scheduler = SchedulerCore(store, inbox, now=clock, timers=False, config_jobs=specs)
        await scheduler.start()
        clock.advance(90)
        await scheduler.reconcile_all()
        assert [e.chat for e in await inbox_events(inbox)] == [CARL]
        done = recorded.value("whatsray_scheduler_runs_total", kind="greeting", result="done")
        assert done == 1


# --- the jobs file at start ----------------------------------------------------------------------


async def test_the_jobs_file_wins_at_every_start(store: Store) -> None:
    clock = FakeClock(T0)

    class Sink:
        async def append(self, events: Sequence[Event]) -> AppendResult:
            raise AssertionError("nothing is due in this test")

    async def start(data: dict[str, Any]) -> SchedulerCore:
        scheduler = SchedulerCore(
            store, Sink(), now=clock, timers=False, config_jobs=parse_jobs(data, now=clock())
        )
        await scheduler.start()
        return scheduler

    reminder = {"chat": str(ANNA), "cron": "0 9 * * 1", "text": "The workshop opens at 10."}
    scheduler = await start({"jobs": {**greeting_file(enabled=False)["jobs"], "shop": reminder}})
    shop = await scheduler.get_job("config:shop")
    assert (shop.kind, shop.chat, shop.payload) == (
        "reminder",
        str(ANNA),
        {"text": reminder["text"]},
    )
    assert not (await scheduler.get_job("config:morning_greeting")).enabled

    await scheduler.start_job("config:morning_greeting")  # through the API...
    await start({"jobs": {**greeting_file(enabled=False)["jobs"], "shop": reminder}})
    assert not (await scheduler.get_job("config:morning_greeting")).enabled  # ...the file wins

    changed = {**reminder, "cron": "0 10 * * 1"}
    scheduler = await start({"jobs": {"shop": changed}})  # greeting removed, reminder changed
    shop = await scheduler.get_job("config:shop")
    assert shop.trigger.model_dump()["expression"] == "0 10 * * 1"
    greeting = await scheduler.get_job("config:morning_greeting")
    assert not greeting.enabled  # stopped, kept with its history

    scheduler = await start({"jobs": {"shop": {**changed, "chat": str(BEN)}}})  # another chat
    assert (await scheduler.get_job("config:shop")).chat == str(BEN)
    assert [j.id for j in await scheduler.list_jobs(kind="reminder")] == ["config:shop"]
