"""The host-side map of sessions: activation on first item, passivation when idle.

One `SessionRegistry` per SessionHost (the Ray actor wraps it and feeds it its stream partition).
It is the Orleans/Akka "virtual actor" directory for one partition: a session exists for every
chat seen recently, is activated by the chat's next item (state rebuilt through `load_state`) and
dropped by `sweep` after `idle_timeout_s` without work. Dropping persists nothing because every
turn was committed as it ended.

Only busy sessions are `Session` objects. An idle one is kept as a plain tuple (`IdleSession`),
which the garbage collector does not track: a full collection costs the same with 100,000 idle
chats in memory as with none, so filling a host stays linear.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from whatsray.session.config import SessionConfig, SessionHooks
from whatsray.session.runtime import SessionRuntime
from whatsray.session.session import IdleSession, Session
from whatsray.session.state import SessionState
from whatsray.session.turns import Inbound
from whatsray.whatsapp.events import ChatKey

__all__ = ["RegistryStats", "SessionCounts", "SessionRegistry"]

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
    quarantined: int  # items given up on (docs/errors.md)


@dataclass(frozen=True, slots=True)
class SessionCounts:
    active: int  # in memory, busy or idle
    busy: int  # with work: a turn running, or items waiting for one


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
        self._busy: dict[str, Session] = {}  # sessions with work
        # Insertion order is "went idle" order (see _on_idle), so sweep stops early.
        self._idle: dict[str, IdleSession] = {}
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
        session = self._busy.get(key)
        if session is None:
            idle = self._idle.pop(key, None)
            if idle is None:
                self._activations += 1  # its state is loaded by its drain task, in order
            session = self._busy[key] = Session(key, self._rt, idle)
        self._rt.unacked += 1
        session.offer(entry)

    async def sweep(self) -> int:
        """Passivate sessions idle for `idle_timeout_s`. Returns how many were dropped."""
        cutoff = self._rt.now() - self.config.idle_timeout_s
        expired: list[str] = []
        for key, (went_idle, _, _) in self._idle.items():
            if went_idle > cutoff:
                break  # idle sessions are in the order they went idle: the rest are newer
            expired.append(key)
        for key in expired:
            del self._idle[key]
        self._passivations += len(expired)
        if expired:
            log.debug("passivated %d idle session(s)", len(expired))
        return len(expired)

    def invalidate(self, chat: ChatKey | str) -> None:
        """Forget a chat's cached state (the store changed it, e.g. an admin ended a handoff).

        An idle session is dropped; a busy one reloads its state before its next turn.
        """
        key = str(chat)
        session = self._busy.get(key)
        if session is not None:
            session.invalidate()
        elif self._idle.pop(key, None) is not None:
            self._passivations += 1

    def state_of(self, chat: ChatKey | str) -> SessionState | None:
        """The cached state of a chat, None when it is not in memory (or not loaded yet)."""
        key = str(chat)
        session = self._busy.get(key)
        if session is None:
            idle = self._idle.get(key)
            if idle is None:
                return None
            session = Session(key, self._rt, idle)
        return session.state

    async def wait_idle(self) -> None:
        """Until no session has work (everything delivered so far is acked or dropped)."""
        await self._all_idle.wait()

    async def close(self) -> None:
        """Cancel all work. Nothing is acked: unfinished items are redelivered to the next host."""
        self._closed = True
        tasks = [task for s in self._busy.values() if (task := s.task) is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._busy.clear()
        self._idle.clear()

    def stats(self) -> RegistryStats:
        rt = self._rt
        return RegistryStats(
            sessions=len(self),
            busy=len(self._busy),
            unacked=rt.unacked,
            activations=self._activations,
            passivations=self._passivations,
            turns=rt.turns,
            turn_failures=rt.turn_failures,
            interrupts=rt.interrupts,
            rejected=rt.rejected,
            duplicates=rt.duplicates,
            retries=rt.retries,
            quarantined=rt.quarantined,
        )

    def __len__(self) -> int:
        return len(self._busy) + len(self._idle)

    def counts(self) -> SessionCounts:
        """Its sessions now (`GET /api/status`)."""
        return SessionCounts(active=len(self), busy=len(self._busy))

    def __contains__(self, chat: object) -> bool:
        if not isinstance(chat, ChatKey | str):
            return False
        key = str(chat)
        return key in self._busy or key in self._idle

    def _on_busy(self, session: Session) -> None:
        self._all_idle.clear()

    def _on_idle(self, session: Session, dropped: int) -> None:
        self._rt.unacked -= dropped
        key = session.key
        if self._busy.get(key) is session:  # not after close()
            del self._busy[key]
            self._idle[key] = session.idle()  # at the end: the dict stays in went-idle order
        if not self._busy:
            self._all_idle.set()
