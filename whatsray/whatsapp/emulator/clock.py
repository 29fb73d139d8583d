"""The emulator's clock: wall time that can be pushed forward, or a fully manual fake.

Every time-based rule (24 h window, rate-limit refill, status delays, retry backoff, media URL
expiry) reads this clock, so tests and the control API can move time instead of sleeping.
`sleep()` returns as soon as the clock reaches the target, whether real time passed or someone
called `advance()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What the emulator needs from a clock: Unix seconds now, and a sleep on that time line."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


@runtime_checkable
class AdvanceableClock(Clock, Protocol):
    """A clock the control API can push forward (`POST /emulator/clock/advance`)."""

    def advance(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time plus an offset that `advance()` grows (the default clock)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._advanced = asyncio.Event()

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
        # Wake every sleeper so it re-checks its target against the new time.
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        target = self.now() + seconds
        while (remaining := target - self.now()) > 0:
            advanced = self._advanced
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(advanced.wait(), timeout=remaining)
        await asyncio.sleep(0)


class FakeClock:
    """A clock that only moves when `advance()` is called (for tests)."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._now += seconds
        still_waiting = []
        for target, future in self._sleepers:
            if future.done():
                continue
            if target <= self._now:
                future.set_result(None)
            else:
                still_waiting.append((target, future))
        self._sleepers = still_waiting

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + seconds, future))
        await future
