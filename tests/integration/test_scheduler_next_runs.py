"""`SchedulerCore.next_runs`: the jobs whose timers fire soonest, from the armed APScheduler
timers (real ones here, on the real clock) and named from a real DuckDB store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.store_helpers import PNID
from tests.support.recording_sink import RecordingSink
from whatsray.scheduling import DateSpec, IntervalSpec, JobPatch, JobSpec, SchedulerCore
from whatsray.store import Store

pytestmark = pytest.mark.integration

CHAT = f"{PNID}:15551234567"


@pytest.fixture
async def scheduler(tmp_path: Path) -> AsyncIterator[SchedulerCore]:
    async with Store(tmp_path / "jobs.duckdb") as store:
        core = SchedulerCore(store, RecordingSink(), timers=True)
        await core.start()
        try:
            yield core
        finally:
            await core.close()


def once(name: str, in_s: float) -> JobSpec:
    at = datetime.fromtimestamp(time.time() + in_s, UTC)
    return JobSpec(
        name=name, chat=CHAT, payload={"text": name}, trigger=DateSpec(run_at=at), timezone="UTC"
    )


async def test_the_soonest_timers_first_each_named(scheduler: SchedulerCore) -> None:
    assert await scheduler.next_runs() == []  # the periodic sweep is not a job
    later = await scheduler.create_job(once("later", 7200))
    soon = await scheduler.create_job(once("soon", 3600))
    hourly = await scheduler.create_job(
        JobSpec(
            name="every 90 min",
            chat=CHAT,
            payload={"text": "tick"},
            trigger=IntervalSpec(seconds=5400),
        )
    )
    runs = await scheduler.next_runs()

    assert [(r.job_id, r.name, r.kind, r.chat) for r in runs] == [
        (soon.id, "soon", "reminder", CHAT),
        (hourly.id, "every 90 min", "reminder", CHAT),
        (later.id, "later", "reminder", CHAT),
    ]
    assert runs[0].at == pytest.approx(soon.next_run_at, abs=1.0)
    assert [r.job_id for r in await scheduler.next_runs(limit=1)] == [soon.id]


async def test_stopped_and_deleted_jobs_are_not_next(scheduler: SchedulerCore) -> None:
    first = await scheduler.create_job(once("first", 600))
    second = await scheduler.create_job(once("second", 1200))
    third = await scheduler.create_job(once("third", 1800))
    await scheduler.update_job(first.id, JobPatch(enabled=False))
    await scheduler.delete_job(second.id)

    assert [r.job_id for r in await scheduler.next_runs()] == [third.id]
