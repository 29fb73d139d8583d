"""Read receipts and the typing indicator are best effort (whatsray/pipeline/relays.py): an
outbox that raises or never answers costs a turn nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from whatsray.pipeline.relays import ReadReceipts

PNID = "106540352242922"


class Outbox:
    """`mark_reads` raises, or hangs until released, for the first calls; then works."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        self.calls: list[list[str]] = []
        self.called = asyncio.Event()
        self.release = asyncio.Event()

    async def mark_reads(self, message_ids: Sequence[str], typing_indicator: bool = True) -> None:
        self.calls.append(list(message_ids))
        self.called.set()
        failure = self.failures.pop(0) if self.failures else None
        if failure == "raise":
            raise ConnectionError("the outbox actor is unreachable")
        if failure == "hang":
            await self.release.wait()


async def test_a_refresh_whose_outbox_raises_returns_without_raising() -> None:
    outbox = Outbox(["raise", "raise"])
    reads = ReadReceipts(lambda _: outbox)  # type: ignore[arg-type, return-value]
    reads.send(PNID, "wamid.a")
    await reads.refresh(PNID, "wamid.a")  # the batch it rode in raised: logged, not raised
    await reads.refresh(PNID, "wamid.a")
    assert outbox.calls[-1] == ["wamid.a"]


async def test_a_refresh_for_a_number_no_outbox_serves_returns_without_raising() -> None:
    def outbox_for(number: str) -> Any:
        raise KeyError(number)

    reads = ReadReceipts(outbox_for)
    reads.send(PNID, "wamid.a")  # never raises either
    await reads.refresh(PNID, "wamid.a")


async def test_an_outbox_that_never_answers_does_not_hold_later_receipts_forever() -> None:
    outbox = Outbox(["hang"])
    reads = ReadReceipts(lambda _: outbox, timeout_s=0.05)  # type: ignore[arg-type, return-value]
    reads.send(PNID, "wamid.a")
    await outbox.called.wait()  # the first call hangs (an actor restarting)
    # Bounded only so that a broken run fails instead of hanging.
    await asyncio.wait_for(reads.refresh(PNID, "wamid.b"), 30)
    assert outbox.calls == [["wamid.a"], ["wamid.b"]]  # given up on, and the next one went out
    outbox.release.set()
