"""The host-side map of sessions: activation on first item, passivation when idle.

One `SessionRegistry` per SessionHost (the Ray actor wraps it and feeds it its stream partition).
It is the Orleans/Akka "virtual actor" directory for one partition: a session exists for every
chat seen recently, is activated by the chat's next item (state rebuilt through `load_state`) and
dropped by `sweep` after `idle_timeout_s` without work. Dropping persists nothing because every
turn was committed as it ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from whatsray.session.config import SessionConfig, SessionHooks
from whatsray.session.runtime import SessionRuntime
from whatsray.session.session import Session
from whatsray.session.state import SessionState
from whatsray.session.turns import Inbound
from whatsray.whatsapp.events import ChatKey

__all__ = ["RegistryStats", "SessionRegistry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegistryStats:
    sessions: int  # in memory, busy or idle
    busy: int  # with work (a drain task)
    unacked: int  # delivered items not yet acked: the host's backpressure signal
    activations: int
    passivations: int
    turns: int
    turn_failures: int
    interrupts: int
    rejected: int
    duplicates: int
    retries: int


class SessionRegistry:
    """Sessions of one host, by canonical chat key. Use from one event loop."""

    def __init__(
        self,
        hooks: SessionHooks,
        config: SessionConfig | None = None,
        *,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config if config is not None else SessionConfig()
        self._rt = SessionRuntime(hooks, self.config, now, sleep, self._on_busy, self._on_idle)
        # Insertion order is kept as "went idle" order (see _on_idle), so sweep stops early.
        self._sessions: dict[str, Session] = {}
        self._busy = 0
        self._all_idle = asyncio.Event()
        self._all_idle.set()
        self._closed = False
        self._activations = 0
        self._passivations = 0

    async def deliver(self, entry: Inbound) -> None:
        """Hand an item to its chat's session, activating it if needed. Returns at once.

        Call it in stream order: a chat's items are handled in the order they were delivered.
        """
        if self._closed:
            raise RuntimeError("the session registry is closed")
        key = str(entry.chat)
        session = self._sessions.get(key)
        if session is None:
            session = Session(key, self._rt)  # state is loaded by its drain task, in order
            self._sessions[key] = session
            self._activations += 1
        self._rt.unacked += 1
        session.offer(entry)

    async def sweep(self) -> int:
        """Passivate sessions idle for `idle_timeout_s`. Returns how many were dropped."""
        cutoff = self._rt.now() - self.config.idle_timeout_s
        expired: list[str] = []
        for key, session in self._sessions.items():
            if session.busy:
                continue
            if session.last_active > cutoff:
                break  # idle sessions are in the order they went idle: the rest are newer
            expired.append(key)
        for key in expired:
            del self._sessions[key]
        self._passivations += len(expired)
        if expired:
            log.debug("passivated %d idle session(s)", len(expired))
        return len(expired)

    def invalidate(self, chat: ChatKey | str) -> None:
        """Forget a chat's cached state (the store changed it, e.g. an admin ended a handoff).

        An idle session is dropped; a busy one reloads its state before its next turn.
        """
        key = str(chat)
        session = self._sessions.get(key)
        if session is None:
            return
        if session.busy:
            session.state = None
        else:
            del self._sessions[key]
            self._passivations += 1

    def state_of(self, chat: ChatKey | str) -> SessionState | None:
        """The cached state of a chat, None when it is not in memory (or not loaded yet)."""
        session = self._sessions.get(str(chat))
        return session.state if session is not None else None

    async def wait_idle(self) -> None:
        """Until no session has work (everything delivered so far is acked or dropped)."""
        await self._all_idle.wait()

    async def close(self) -> None:
        """Cancel all work. Nothing is acked: unfinished items are redelivered to the next host."""
        self._closed = True
        tasks = [task for s in self._sessions.values() if (task := s.task) is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sessions.clear()

    def stats(self) -> RegistryStats:
        rt = self._rt
        return RegistryStats(
            sessions=len(self._sessions),
            busy=self._busy,
            unacked=rt.unacked,
            activations=self._activations,
            passivations=self._passivations,
            turns=rt.turns,
            turn_failures=rt.turn_failures,
            interrupts=rt.interrupts,
            rejected=rt.rejected,
            duplicates=rt.duplicates,
            retries=rt.retries,
        )

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, chat: object) -> bool:
        return isinstance(chat, ChatKey | str) and str(chat) in self._sessions

    def _on_busy(self, session: Session) -> None:
        self._busy += 1
        self._all_idle.clear()

    def _on_idle(self, session: Session, dropped: int) -> None:
        self._busy -= 1
        self._rt.unacked -= dropped
        if self._sessions.get(session.key) is session:
            # Move to the end: the dict stays ordered by when sessions went idle.
            del self._sessions[session.key]
            self._sessions[session.key] = session
        if self._busy == 0:
            self._all_idle.set()
