"""What a user sees while a turn waits for inference: the typing indicator, then "one moment".

WhatsApp drops the typing indicator after 25 seconds, so a long turn refreshes it. When the turn
has run `notice_after_s` and inference is saturated (the agent's queue or engine says so), the
user gets the agent's short notice once; the outbound id derives from the turn, so a retried turn
never sends it twice. Every step is best effort: none of it may cost the user the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

__all__ = ["TYPING_REFRESH_S", "WaitingNotice", "WaitingStats"]

log = logging.getLogger(__name__)

TYPING_REFRESH_S = 20.0  # Meta hides the indicator after 25 s


@dataclass
class WaitingStats:
    notices_sent: int = 0
    typing_refreshes: int = 0


class WaitingNotice:
    def __init__(
        self,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        typing_refresh_s: float = TYPING_REFRESH_S,
    ) -> None:
        self._sleep = sleep
        self._typing_refresh_s = typing_refresh_s
        self.stats = WaitingStats()

    @contextlib.asynccontextmanager
    async def watch(
        self,
        *,
        refresh_typing: Callable[[], Awaitable[None]] | None,
        saturated: Callable[[], Awaitable[bool]],
        send_notice: Callable[[], Awaitable[None]],
        notice_after_s: float | None,
    ) -> AsyncIterator[None]:
        """Run the body (the turn) with the watcher beside it; the watcher stops with the body."""
        tasks = []
        if refresh_typing is not None:
            tasks.append(asyncio.ensure_future(self._keep_typing(refresh_typing)))
        if notice_after_s is not None:
            tasks.append(
                asyncio.ensure_future(self._notice(notice_after_s, saturated, send_notice))
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _keep_typing(self, refresh: Callable[[], Awaitable[None]]) -> None:
        while True:
            await self._sleep(self._typing_refresh_s)
            await _best_effort("typing refresh", refresh)
            self.stats.typing_refreshes += 1

    async def _notice(
        self,
        after_s: float,
        saturated: Callable[[], Awaitable[bool]],
        send: Callable[[], Awaitable[None]],
    ) -> None:
        await self._sleep(after_s)
        try:
            busy = await saturated()
        except Exception:
            log.warning("could not read the inference load", exc_info=True)
            return
        if busy and await _best_effort("one-moment notice", send):
            self.stats.notices_sent += 1


async def _best_effort(what: str, action: Callable[[], Awaitable[None]]) -> bool:
    try:
        await action()
    except Exception:
        log.warning("%s failed", what, exc_info=True)
        return False
    return True
