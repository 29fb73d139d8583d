"""The Batcher: one call in flight, everything that came meanwhile in the next, one result or
error per item (docs/hot-path.md)."""

from __future__ import annotations

import asyncio

import pytest

from whatsray.batching import Batcher


class Collaborator:
    """Records each call; holds a call until `release` while `hold` is set."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.hold = False
        self.release = asyncio.Event()
        self.called = asyncio.Event()

    async def flush(self, items: list[int]) -> list[int | BaseException]:
        self.calls.append(items)
        self.called.set()
        if self.hold:
            await self.release.wait()
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_an_idle_batcher_calls_at_once_with_the_one_item() -> None:
    peer = Collaborator()
    batcher: Batcher[int, int] = Batcher(peer.flush, name="t", linger_s=0)
    assert await batcher.submit(1) == 10
    assert peer.calls == [[1]]
    assert not batcher.busy


async def test_items_arriving_during_a_call_share_the_next_call() -> None:
    peer = Collaborator()
    peer.hold = True
    batcher: Batcher[int, int] = Batcher(peer.flush, name="t", linger_s=0)
    first = asyncio.create_task(batcher.submit(1))
    await peer.called.wait()
    rest = [asyncio.create_task(batcher.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    assert batcher.queued == 3  # one call in flight at most
    peer.hold = False
    peer.release.set()
    assert await first == 10
    assert [await r for r in rest] == [20, 30, 40]
    assert peer.calls == [[1], [2, 3, 4]]
    assert (batcher.calls, batcher.items) == (2, 4)


async def test_one_bad_item_fails_alone() -> None:
    peer = Collaborator()
    batcher: Batcher[int, int] = Batcher(peer.flush, name="t", linger_s=0.001)
    results = await asyncio.gather(
        batcher.submit(1), batcher.submit(-1), batcher.submit(2), return_exceptions=True
    )
    assert results[0] == 10 and results[2] == 20
    assert isinstance(results[1], ValueError)


async def test_a_failed_call_fails_each_of_its_items_and_the_next_call_goes_on() -> None:
    attempts: list[list[int]] = []

    async def flaky(items: list[int]) -> list[int | BaseException]:
        attempts.append(items)
        if len(attempts) == 1:
            raise ConnectionError("peer down")
        return list(items)

    batcher: Batcher[int, int] = Batcher(flaky, name="t", linger_s=0)
    with pytest.raises(ConnectionError):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2  # the caller retries its own item, as with a direct call


async def test_a_flush_that_answers_the_wrong_number_of_results_fails_the_items() -> None:
    async def short(items: list[int]) -> list[int | BaseException]:
        return []

    batcher: Batcher[int, int] = Batcher(short, name="t", linger_s=0)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        await batcher.submit(1)


async def test_a_cancelled_caller_does_not_cancel_the_call_of_the_others() -> None:
    peer = Collaborator()
    peer.hold = True
    batcher: Batcher[int, int] = Batcher(peer.flush, name="t", linger_s=0)
    gone = asyncio.create_task(batcher.submit(1))
    await peer.called.wait()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    stays = asyncio.create_task(batcher.submit(2))
    peer.hold = False
    peer.release.set()
    assert await stays == 20
    assert peer.calls == [[1], [2]]  # the first call ran to its end


def test_bad_settings_are_refused() -> None:
    async def flush(items: list[int]) -> list[int | BaseException]:
        return list(items)

    with pytest.raises(ValueError, match="linger_s"):
        Batcher(flush, name="t", linger_s=-1)
    with pytest.raises(ValueError, match="max_items"):
        Batcher(flush, name="t", max_items=0)
