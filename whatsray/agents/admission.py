"""Backpressure in front of inference: a bounded number of turns at once, fair across chats.

An agent worker admits at most `capacity` turns to its engine at a time. The rest wait in one
queue per chat, and a freed slot goes to the next chat in round-robin order: a chat that sent a
burst gets one turn in at a time while every other waiting chat gets its own turn in between.
Nothing is dropped: a waiting turn waits (the host keeps the typing indicator on and says "one
moment" once). With a fallback engine configured, a turn that has waited `fallback_after_s`
leaves the queue and runs on the fallback instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from whatsray.llm.load import EngineLoad

__all__ = ["AdmissionStats", "FairAdmission", "SlotTimeout"]


class SlotTimeout(Exception):
    """No slot within the wait given to `slot(...)`; the turn was taken out of the queue."""


@dataclass(frozen=True, slots=True)
class AdmissionStats:
    """Counters since start, for the admin API and metrics."""

    admitted: int  # turns that got a slot
    waited: int  # of those, turns that had to queue first
    timed_out: int  # turns that gave up waiting (and went to a fallback)
    max_wait_s: float  # the longest queueing of an admitted turn
    total_wait_s: float


class FairAdmission:
    """Round-robin across chats, FIFO within a chat. One event loop; not thread-safe."""

    def __init__(self, capacity: int, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._monotonic = monotonic
        self._running = 0
        # chat -> its waiters, oldest first; the dict's order is the round-robin order.
        self._queues: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._admitted = self._waited = self._timed_out = 0
        self._max_wait_s = self._total_wait_s = 0.0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def waiting_chats(self) -> int:
        return len(self._queues)

    def load(self) -> EngineLoad:
        return EngineLoad(running=self._running, waiting=self.waiting, capacity=self.capacity)

    def stats(self) -> AdmissionStats:
        return AdmissionStats(
            admitted=self._admitted,
            waited=self._waited,
            timed_out=self._timed_out,
            max_wait_s=self._max_wait_s,
            total_wait_s=self._total_wait_s,
        )

    @asynccontextmanager
    async def slot(self, chat: str, *, wait_s: float | None = None) -> AsyncIterator[None]:
        """Hold one slot for the body. Raises `SlotTimeout` after waiting `wait_s` (None: wait
        as long as it takes); a cancelled waiter leaves the queue without taking a slot."""
        await self._acquire(chat, wait_s)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, chat: str, wait_s: float | None) -> None:
        if self._running < self.capacity and not self._queues:
            self._grant(0.0)
            return
        started = self._monotonic()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(chat, deque()).append(waiter)
        try:
            async with asyncio.timeout(wait_s):
                await asyncio.shield(waiter)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # Granted in the same instant as the timeout/cancel: hand the slot on.
                self._running -= 1
                self._wake_next()
            else:
                waiter.cancel()
                self._forget(chat, waiter)
            if isinstance(exc, TimeoutError):
                self._timed_out += 1
                raise SlotTimeout(f"no inference slot within {wait_s} s") from None
            raise
        self._waited += 1
        self._grant(self._monotonic() - started, counted=True)

    def _grant(self, waited_s: float, *, counted: bool = False) -> None:
        if not counted:  # a queued waiter's slot was taken for it in `_wake_next`
            self._running += 1
        self._admitted += 1
        self._total_wait_s += waited_s
        self._max_wait_s = max(self._max_wait_s, waited_s)

    def _release(self) -> None:
        self._running -= 1
        self._wake_next()

    def _wake_next(self) -> None:
        """Give free slots to the oldest waiter of the next chat in turn."""
        while self._running < self.capacity and self._queues:
            chat, queue = next(iter(self._queues.items()))
            waiter = queue.popleft()
            if queue:
                self._queues.move_to_end(chat)  # its next turn waits behind the other chats
            else:
                del self._queues[chat]
            if waiter.done():  # cancelled, not yet forgotten
                continue
            self._running += 1
            waiter.set_result(None)

    def _forget(self, chat: str, waiter: asyncio.Future[None]) -> None:
        queue = self._queues.get(chat)
        if queue is None:
            return
        try:
            queue.remove(waiter)
        except ValueError:
            return
        if not queue:
            del self._queues[chat]
