"""A reminder through the whole pipeline in one process (no Ray): the scheduler's real APScheduler
timer fires, the run goes to the chat's partition of the real inbox (Valkey), the chat's session
runs a turn, and the agent's reply reaches the user (the emulator). The reminder is not the user
writing: the chat's 24-hour window and contact stay as the user left them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.integration.test_pipeline_in_process import Pipeline, agents_config, running_pipeline
from whatsray.scheduling import DateSpec, JobSpec, SchedulerCore
from whatsray.session.scheduled import scheduled_event
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID
from whatsray.whatsapp.events import ChatKey


@pytest.fixture
async def pipeline(redis: aioredis.Redis, tmp_path: Path) -> AsyncIterator[Pipeline]:
    async with running_pipeline(redis, tmp_path / "whatsray.duckdb", agents_config()) as running:
        yield running


async def test_a_reminder_is_answered_by_the_agent_once_and_opens_no_window(
    pipeline: Pipeline,
) -> None:
    user = "15551239001"
    chat = ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=user)
    await pipeline.user_says(user, "remind me to call mom")
    assert await pipeline.replies_to(user, 1) == ["echo: remind me to call mom"]
    before = await pipeline.store.get_chat(chat)
    assert before is not None and before.last_inbound_at is not None

    scheduler = SchedulerCore(pipeline.store, pipeline.inbox, sweep_every_s=1)
    await scheduler.start()
    try:
        run_at = datetime.fromtimestamp(time.time() + 1.5, UTC)
        job = await scheduler.create_job(
            JobSpec(
                name="mom",
                chat=str(chat),
                payload={"text": "call mom"},
                trigger=DateSpec(run_at=run_at),
            )
        )
        replies = await pipeline.replies_to(user, 2)
        assert replies[1] == "echo: [Scheduled reminder] call mom"
        [run] = await scheduler.job_runs(job.id)
        assert run.status == "dispatched" and run.entry_id is not None
        # A re-dispatch after a crash appends the same run id: the inbox keeps one entry.
        again = await pipeline.inbox.append(
            [
                scheduled_event(
                    run_id=run.run_id,
                    job_id=job.id,
                    job_name="mom",
                    chat=chat,
                    instruction="call mom",
                    scheduled_for=run.scheduled_for,
                    due_at=run.due_at,
                )
            ]
        )
        assert again.outcomes[0].duplicate and again.outcomes[0].entry_id == run.entry_id
        await pipeline.quiet()  # a second reply would be there once all is quiet
        assert len(await pipeline.replies_to(user, 3, within_s=0)) == 2
    finally:
        await scheduler.close()

    stored = await pipeline.store.get_message(run.run_id)
    assert stored is not None and stored.type == "scheduled" and stored.wamid is None
    assert stored.turn_id is not None  # consumed by the turn that answered it
    after = await pipeline.store.get_chat(chat)
    assert after is not None and after.last_inbound_at == before.last_inbound_at
    # No read receipt or typing indicator for a message the user never sent.
    assert all(r.body.get("message_id") != run.run_id for r in pipeline.emulator.outbound())
