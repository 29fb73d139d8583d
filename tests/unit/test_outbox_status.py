"""`Outbox.status()`: the queue (recorded, not yet accepted by Meta) and the rate limits, live."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from outbox_harness import PNID, outbox_rig

from whatsray.outbox.snapshot import OutboxStatus


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def test_status_shows_queued_and_waiting_sends_then_drains() -> None:
    async with outbox_rig(throughput_mps=2.0) as rig:
        users = [f"+1555010{i:04d}" for i in range(5)]
        for user in users:
            rig.open_window(user)
        gate = asyncio.Event()  # the rate limiter's sleeps start when the test says so

        async def held(seconds: float) -> None:
            await gate.wait()
            await rig.time.sleep(seconds)

        outbox = rig.outbox(throughput_mps=2.0, sleep=held)
        assert outbox.status() == OutboxStatus(
            phone_number_id=PNID,
            queue_depth=0,
            oldest_pending_s=None,
            throughput_mps=2.0,
            tokens_available=2.0,
            pair_buckets=0,
            waiting_sends=0,
        )
        items = [rig.item(f"q{i}:0", f"hi {i}", user) for i, user in enumerate(users)]
        sends = asyncio.gather(*(outbox.submit([item]) for item in items))

        # A burst of two goes out; the other three wait for a throughput token.
        await until(lambda: (outbox.status().queue_depth, outbox.status().waiting_sends) == (3, 3))
        status = outbox.status()
        assert status.tokens_available == 0.0  # the waiters hold reservations on the bucket
        assert status.pair_buckets == 5
        rig.harness.clock.advance(7.0)
        assert outbox.status().oldest_pending_s == pytest.approx(7.0)

        gate.set()
        await sends
        assert len(rig.accepted()) == 5
        drained = outbox.status()
        assert (drained.queue_depth, drained.oldest_pending_s, drained.waiting_sends) == (
            0,
            None,
            0,
        )


async def test_a_dead_letter_leaves_the_queue() -> None:
    async with outbox_rig() as rig:
        outbox = rig.outbox()  # the window is closed and there is no template: dead letter
        await outbox.submit([rig.item("dl:0", "too late", "+15550109999")])
        record = await rig.ledger.get_outbound("dl:0")
        assert record is not None and record.status == "dead"
        assert outbox.status().queue_depth == 0
