"""Migration 3 on a real DuckDB file: jobs, the run ledger, and scheduled inputs in the history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.integration.store_helpers import FakeClock, chat, inbound, write_as_an_old_version
from whatsray.session.scheduled import scheduled_event
from whatsray.store import MIGRATIONS, JobRecord, JobRunRecord, Store
from whatsray.store.errors import StoreWriteError

T0 = 1_750_000_000.0


def job(**changes: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": "j1",
        "name": "water",
        "kind": "reminder",
        "chat": str(chat()),
        "payload": {"text": "drink water"},
        "trigger": {"type": "interval", "seconds": 60, "start_at": None},
        "timezone": "Europe/Berlin",
        "quiet_hours": {"start": "22:00", "end": "08:00", "policy": "defer"},
        "misfire_grace_s": 30.0,
        "coalesce": True,
        "enabled": True,
        "active_since": T0,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(changes)
    return JobRecord(**values)


def run(at: float, job_id: str = "j1", **changes: Any) -> JobRunRecord:
    values: dict[str, Any] = {
        "run_id": f"{job_id}@{at}",
        "job_id": job_id,
        "scheduled_for": at,
        "due_at": at,
        "status": "pending",
        "created_at": at,
        "updated_at": at,
    }
    values.update(changes)
    return JobRunRecord(**values)


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    async with Store(tmp_path / "jobs.duckdb", now=FakeClock(T0)) as s:
        yield s


async def test_migration_3_creates_the_tables_and_a_version_2_file_upgrades(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.duckdb"
    async with Store(path, migrations=MIGRATIONS[:2]) as old:
        assert old.schema_version == 2
    write_as_an_old_version(path, wamid="wamid.OLD")
    async with Store(path) as new:
        assert 3 in new.applied_migrations
        assert await new.get_message("wamid.OLD") is not None  # the data survived
        assert await new.insert_job(job())
        assert await new.count("job_runs") == 0
    with duckdb.connect(str(path)) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version").fetchall()]
    assert 3 in versions


async def test_a_job_round_trips_and_its_id_is_inserted_once(store: Store) -> None:
    record = job()
    assert await store.insert_job(record)
    assert await store.get_job("j1") == record
    assert not await store.insert_job(job(name="other"))  # insert-if-absent
    assert (await store.get_job("j1")) == record
    assert await store.get_job("nope") is None


async def test_replace_and_delete_a_job(store: Store) -> None:
    await store.insert_job(job())
    changed = job(name="tea", enabled=False, quiet_hours=None, updated_at=T0 + 5)
    assert await store.replace_job(changed)
    assert await store.get_job("j1") == changed
    assert not await store.replace_job(job(id="ghost"))
    await store.record_job_run(run(T0 + 60))
    assert await store.delete_job("j1")
    assert await store.get_job("j1") is None
    assert await store.list_job_runs("j1") == []  # its history went with it
    assert not await store.delete_job("j1")


async def test_list_jobs_filters_by_kind_chat_and_state(store: Store) -> None:
    await store.insert_job(job(id="a"))
    await store.insert_job(job(id="b", chat=str(chat("15550000002")), created_at=T0 + 1))
    system = job(id="s", kind="system", chat=None, payload={"task": "cleanup"}, enabled=False)
    await store.insert_job(system)
    assert [j.id for j in await store.list_jobs()] == ["a", "s", "b"]
    assert [j.id for j in await store.list_jobs(kind="system")] == ["s"]
    assert [j.id for j in await store.list_jobs(chat=str(chat("15550000002")))] == ["b"]
    assert [j.id for j in await store.list_jobs(enabled=False)] == ["s"]


async def test_a_bad_job_is_refused_whole(store: Store) -> None:
    with pytest.raises(StoreWriteError):
        bad = JobRecord.model_construct(**{**job().model_dump(), "kind": "weekly"})
        await store.insert_job(bad)  # the table's CHECK refuses it
    assert await store.list_jobs() == []


async def test_the_run_ledger_records_each_run_once_and_settles_it_once(store: Store) -> None:
    await store.insert_job(job())
    assert await store.record_job_run(run(T0 + 60))
    assert not await store.record_job_run(run(T0 + 60, status="skipped"))  # insert-if-absent
    assert [r.run_id for r in await store.pending_job_runs()] == [f"j1@{T0 + 60}"]
    assert await store.settle_job_run(f"j1@{T0 + 60}", "dispatched", entry_id="1-0")
    assert not await store.settle_job_run(f"j1@{T0 + 60}", "skipped", reason="late")
    [settled] = await store.list_job_runs("j1")
    assert (settled.status, settled.entry_id, settled.reason) == ("dispatched", "1-0", None)
    assert await store.pending_job_runs("j1") == []
    with pytest.raises(ValueError, match="settled to"):
        await store.settle_job_run("x", "pending")


async def test_runs_list_newest_first_and_the_last_fire_time_is_known(store: Store) -> None:
    assert await store.last_job_run_at("j1") is None
    for at in (T0 + 60, T0 + 180, T0 + 120):
        await store.record_job_run(run(at))
    assert [r.scheduled_for for r in await store.list_job_runs("j1")] == [
        T0 + 180,
        T0 + 120,
        T0 + 60,
    ]
    assert [r.scheduled_for for r in await store.list_job_runs("j1", 1, 1)] == [T0 + 120]
    assert await store.last_job_run_at("j1") == T0 + 180


async def test_a_system_run_keeps_its_result(store: Store) -> None:
    await store.record_job_run(run(T0, job_id="s"))
    await store.settle_job_run(f"s@{T0}", "done", result={"messages_in": 3})
    [done] = await store.list_job_runs("s")
    assert (done.status, done.result) == ("done", {"messages_in": 3})


async def test_pruning_keeps_pending_runs_and_each_jobs_newest(store: Store) -> None:
    for at in (T0, T0 + 60, T0 + 120):
        await store.record_job_run(run(at, status="dispatched"))
    await store.record_job_run(run(T0 + 1, job_id="other", status="skipped"))
    await store.record_job_run(run(T0 + 2, job_id="late", status="pending"))
    await store.record_job_run(run(T0 + 3, job_id="late", status="done"))
    assert await store.prune_job_runs(T0 + 1000) == 2  # j1's two older runs
    left = {r.run_id for j in ("j1", "other", "late") for r in await store.list_job_runs(j)}
    assert left == {f"j1@{T0 + 120}", f"other@{T0 + 1}", f"late@{T0 + 2}", f"late@{T0 + 3}"}
    assert await store.prune_job_runs(T0 - 1) == 0  # nothing that old


async def test_a_scheduled_input_is_stored_without_opening_the_window(store: Store) -> None:
    key = chat("15550000009")
    assert await store.record_inbound(inbound("wamid.U1", user="15550000009", at=T0, name="Ann"))
    event = scheduled_event(
        run_id="j1@2025-06-15T09:00:00Z",
        job_id="j1",
        job_name="water",
        chat=key,
        instruction="drink water",
        scheduled_for=T0 + 3600,
        due_at=T0 + 3600,
    )
    assert await store.record_inbound(event)
    assert not await store.record_inbound(event)  # the run id is its message id: once
    stored = await store.get_message("j1@2025-06-15T09:00:00Z")
    assert stored is not None
    assert (stored.direction, stored.type, stored.wamid) == ("in", "scheduled", None)
    assert stored.text == "[Scheduled reminder] drink water"
    record = await store.get_chat(key)
    assert record is not None and record.last_inbound_at == T0  # the user's, not the reminder's
    contact = await store.get_contact(key)
    assert contact is not None and contact.last_seen == T0 and contact.profile_name == "Ann"


async def test_a_reminder_for_a_new_chat_creates_it_with_a_closed_window(store: Store) -> None:
    key = chat("15550000010")
    event = scheduled_event(
        run_id="j2@x",
        job_id="j2",
        job_name="n",
        chat=key,
        instruction="hello",
        scheduled_for=T0,
        due_at=T0,
    )
    await store.record_inbound(event)
    record = await store.get_chat(key)
    assert record is not None and record.last_inbound_at is None
    assert await store.get_contact(key) is None


async def test_activity_since_counts_the_last_day(store: Store) -> None:
    await store.record_inbound(inbound("wamid.A", at=T0 - 90_000))  # too old
    await store.record_inbound(inbound("wamid.B", at=T0 - 100))
    await store.record_job_run(run(T0 - 10, status="dispatched"))
    counts = await store.activity_since(T0 - 86_400)
    assert counts["messages_in"] == 1 and counts["active_chats"] == 1
    assert counts["job_runs"] == 1 and counts["dead_letters"] == 0 and counts["turns"] == 0
