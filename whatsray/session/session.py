"""One chat's session: a virtual actor living inside a SessionHost.

An idle session is not even an object: the registry keeps its `IdleSession` tuple (its packed state,
`ChatMemory`) and builds a `Session` from it when the chat's next item arrives. The session gets a
`_Work` (a mailbox, a wake-up future, one drain task) and hands itself back to the registry as a
tuple when everything is committed and acked, so 100,000 idle chats cost no task and no lock.

Dedupe is by event id against everything the session holds: a message queued, in the turn being
built or running, or in a commit being retried (the `tokens` map: a copy only adds its ack token),
and the committed ids (`ChatMemory.recent`, kept even while an invalidated state awaits its reload).

The drain task is the only code that touches a session's turns, so a chat's items are handled one
at a time in arrival order; every chat has its own task, so chats run concurrently. While a turn
runs (as a child task) the drain keeps watching the mailbox: statuses are applied at once, and the
double-texting policy decides what a new message does to the running turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from whatsray import metrics
from whatsray.observability.logs import bind_ids, log_context
from whatsray.retries import GaveUp
from whatsray.session.config import Quarantine
from whatsray.session.memory import ChatMemory
from whatsray.session.policies import DoubleTextingPolicy, PolicyMode
from whatsray.session.runtime import SessionRuntime, TurnTimeoutError
from whatsray.session.scheduled import opens_window
from whatsray.session.state import (
    HistoryMessage,
    SessionState,
    history_of_event,
    history_of_part,
)
from whatsray.session.turns import (
    Inbound,
    NonMessageEvent,
    RecordReason,
    ToolCall,
    ToolCallJournal,
    TurnOutcome,
    TurnRequest,
    TurnResult,
    needs_no_turn,
    turn_id_for,
)
from whatsray.whatsapp.events import ChatKey, MessageEvent

__all__ = ["IdleSession", "Session"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# An idle session: (went idle at, stale, the ChatMemory as a plain tuple). A plain tuple of
# strings, bytes and numbers is untracked by the garbage collector, unlike any class instance or
# tuple subclass, so 100,000 idle sessions add nothing to the collector's full collections.
IdleSession = tuple[float, bool, tuple[Any, ...] | None]


@dataclass(eq=False, slots=True)
class _Pending:
    """A message waiting for (or in) a turn."""

    event: MessageEvent
    arrived_at: float

    @property
    def sent_at(self) -> float:
        stamp = self.event.timestamp
        return stamp.timestamp() if stamp is not None else self.arrived_at


def _last_inbound(batch: Iterable[_Pending]) -> float | None:
    """When the user last wrote among these (a scheduled input is not the user writing)."""
    return max((p.sent_at for p in batch if opens_window(p.event)), default=None)


class _Work:
    """What a session holds only while it has something to do."""

    __slots__ = ("arrival", "chat", "deferred", "mailbox", "pending", "replied", "task", "tokens")

    def __init__(self, chat: ChatKey) -> None:
        self.chat = chat
        self.mailbox: deque[tuple[Inbound, float]] = deque()  # arrived, not yet looked at
        self.arrival: asyncio.Future[None] | None = None  # resolved by the next arrival
        self.task: asyncio.Task[None] | None = None
        self.pending: list[_Pending] = []  # messages waiting for a turn, in order
        self.tokens: dict[str, list[str]] = {}  # event id -> ack tokens, until acked
        self.deferred: list[HistoryMessage] = []  # rejected during the turn: history after inputs
        self.replied = False  # the reject policy's reply was sent during this turn


class Session:
    """One chat. Created by the registry; only `offer` is called from outside."""

    __slots__ = ("_memory", "_rt", "_stale", "_work", "key", "last_active")

    def __init__(self, key: str, runtime: SessionRuntime, idle: IdleSession | None = None) -> None:
        self.key = key  # the canonical chat key, shared with the registry's dict
        self._rt = runtime
        self._work: _Work | None = None
        if idle is None:
            self.last_active = runtime.now()
            self._memory: ChatMemory | None = None  # None: load before the next turn
            # Reload before the next turn; the stale memory still dedupes by its committed ids.
            self._stale = False
        else:
            self.last_active, self._stale, packed = idle
            self._memory = None if packed is None else ChatMemory._make(packed)

    def idle(self) -> IdleSession:
        """This session as the registry keeps it while idle (see `IdleSession`)."""
        memory = self._memory
        return (self.last_active, self._stale, None if memory is None else tuple(memory))

    @property
    def state(self) -> SessionState | None:
        """The state as loaded and updated by committed turns; None until (re)loaded."""
        memory = self._memory
        return None if memory is None or self._stale else memory.state()

    def invalidate(self) -> None:
        """The store changed the state: reload it before the next turn."""
        self._stale = True

    @property
    def busy(self) -> bool:
        return self._work is not None

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._work.task if self._work is not None else None

    def offer(self, entry: Inbound) -> None:
        """Queue an item; start the drain task if the session was idle. Never blocks."""
        work = self._work
        if work is None:
            work = self._work = _Work(entry.chat)
            self._rt.on_busy(self)
            work.mailbox.append((entry, self._rt.now()))
            work.task = asyncio.get_running_loop().create_task(
                self._drain(work), name=f"session {self.key}"
            )
        else:
            work.mailbox.append((entry, self._rt.now()))
            if work.arrival is not None and not work.arrival.done():
                work.arrival.set_result(None)

    # The drain task.

    async def _drain(self, work: _Work) -> None:
        bind_ids(chat=self.key)  # every line of this task names the chat (by its hash)
        try:
            while True:
                try:
                    await self._loaded(work)  # before absorbing: dedupe reads recent ids
                    await self._absorb(work)
                    # Again after: a handoff flipped while absorbing applies to what was absorbed.
                    state = await self._loaded(work)
                except GaveUp as gave_up:  # no state to work with: these items go no further
                    await self._absorb(work)
                    batch = work.pending[:]
                    work.pending.clear()
                    await self._give_up(work, batch, gave_up)
                    if work.mailbox:
                        continue
                    return
                if not work.pending:
                    if work.mailbox:
                        continue
                    return  # no await since the mailbox was seen empty: no arrival is missed
                if state.handoff:
                    batch = work.pending[:]
                    work.pending.clear()
                    await self._record_without_turn(work, batch, "handoff")
                    continue
                policy = self._rt.policy_for(state.agent)
                if policy.mode is PolicyMode.COALESCE:
                    await self._quiet_period(work, policy)
                take = 1 if policy.mode is PolicyMode.ENQUEUE else len(work.pending)
                batch = work.pending[:take]
                del work.pending[:take]
                await self._turn(work, batch, policy)
        except Exception:
            # A bug, not an I/O failure (those are retried): drop the work unacked. The entries
            # stay pending in the stream and come back when the host re-reads its pending ones.
            log.exception("session: unexpected error; unacked items come back")
        finally:
            dropped = len(work.mailbox) + sum(len(tokens) for tokens in work.tokens.values())
            self._work = None
            self.last_active = self._rt.now()
            self._rt.on_idle(self, dropped)

    async def _loaded(self, work: _Work) -> ChatMemory:
        chat = work.chat
        while True:
            memory = self._memory
            if memory is not None and not self._stale:
                return memory
            self._stale = False  # an invalidation during the load sets it again: load again
            state = await self._retrying("load_state", lambda: self._rt.hooks.load_state(chat))
            config = self._rt.config
            self._memory = ChatMemory.of(state, config.history_limit, config.recent_ids_limit)

    async def _absorb(self, work: _Work) -> list[_Pending]:
        """Take every arrival: dedupe, apply statuses, queue messages. Returns the new messages."""
        new: list[_Pending] = []
        rt = self._rt
        while work.mailbox:
            entry, arrived_at = work.mailbox.popleft()
            event, token = entry.event, entry.ack_token
            if not isinstance(event, MessageEvent):
                await self._apply_status(work, event, token)
                continue
            event_id = event.idempotency_key
            tokens = work.tokens.get(event_id)
            if tokens is not None:  # a copy of a message being worked on: ack them together
                rt.duplicates += 1
                if token in tokens:
                    rt.unacked -= 1
                else:
                    tokens.append(token)
                continue
            memory = self._memory
            if memory is not None and event_id in memory.recent:
                rt.duplicates += 1  # committed already: only the ack was lost
                await self._ack((token,))
                continue
            work.tokens[event_id] = [token]
            pending = _Pending(event, arrived_at)
            # A reaction, a system update: stored, never answered (a person in charge sees it).
            if needs_no_turn(event) and not (memory is not None and memory.handoff):
                await self._record_without_turn(work, [pending], "no_turn")
                continue
            work.pending.append(pending)
            new.append(pending)
        return new

    async def _apply_status(self, work: _Work, event: NonMessageEvent, token: str) -> None:
        rt = self._rt
        try:
            await self._retrying("on_status", lambda: rt.hooks.on_status(event))
        except GaveUp as gave_up:
            if not await rt.quarantine(_quarantine(work.chat, (event,), gave_up)):
                rt.unacked -= 1  # left pending in the stream: re-read at the host's next start
                return
        await self._ack((token,))

    async def _quiet_period(self, work: _Work, policy: DoubleTextingPolicy) -> None:
        """Coalesce: return once no message came for the quiet period, or at the max wait."""
        while True:
            first, last = work.pending[0].arrived_at, work.pending[-1].arrived_at
            deadline = min(last + policy.quiet_period_s, first + policy.max_wait_s)
            remaining = deadline - self._rt.now()
            if remaining <= 0 or not await self._arrival_within(work, remaining):
                return
            await self._absorb(work)

    async def _arrival_within(self, work: _Work, seconds: float) -> bool:
        if work.mailbox:
            return True
        timer = self._rt.timer(seconds)
        try:
            await asyncio.wait((_arrival(work), timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        return bool(work.mailbox)

    # Turns.

    async def _turn(self, work: _Work, batch: list[_Pending], policy: DoubleTextingPolicy) -> None:
        rt, hooks = self._rt, self._rt.hooks
        inputs = batch
        interrupted: tuple[ToolCall, ...] = ()
        attempt = 1
        work.replied = False
        received = min(p.arrived_at for p in batch)
        metrics.turn_stage_seconds.observe(rt.now() - received, stage="queue")
        while True:
            try:
                memory = await self._loaded(work)
            except GaveUp as gave_up:
                await self._give_up(work, inputs, gave_up)
                return
            request = self._request(work, memory, inputs, attempt, interrupted)
            journal = ToolCallJournal()
            result = await self._attempt(work, request, journal, policy)
            if result is not None:
                break
            # Interrupted: rerun over everything, carrying the cancelled attempt's tool calls.
            rt.interrupts += 1
            interrupted += journal.cancel_unfinished()
            inputs = inputs + work.pending
            work.pending.clear()
            attempt += 1
        committing = rt.now()
        try:
            await self._retrying("commit_turn", lambda: hooks.commit_turn(request, result))
        except GaveUp as gave_up:  # the turn is lost, the chat goes on with its next message
            await self._give_up(work, inputs, gave_up, request.turn_id)
            work.deferred.clear()
            return
        rt.turns += 1
        _count_turn(result, received, committing, rt.now())
        await self._ack(self._take_tokens(work, request.inputs))
        held = self._memory
        if held is not None:  # even if stale (reloaded before the next turn): dedupe reads it
            config, at = rt.config, rt.now()
            said = [history_of_event(p.event, p.sent_at) for p in inputs]
            replies = [history_of_part(part, at) for part in result.reply_parts]
            self._memory = held.after(
                messages=[*said, *work.deferred, *replies],
                event_ids=request.input_ids,
                history_limit=config.history_limit,
                recent_limit=config.recent_ids_limit,
                last_inbound_at=request.last_inbound_at,
                agent=result.agent,
                handoff=True if result.outcome is TurnOutcome.HANDOFF else None,
            )
        work.deferred.clear()

    def _request(
        self,
        work: _Work,
        memory: ChatMemory,
        inputs: list[_Pending],
        attempt: int,
        interrupted: tuple[ToolCall, ...],
    ) -> TurnRequest:
        events = tuple(p.event for p in inputs)
        ids = tuple(e.idempotency_key for e in events)
        last_inbound = _last_inbound(inputs)
        latest = memory.last_inbound_at
        if latest is not None:
            last_inbound = max(last_inbound or latest, latest)
        return TurnRequest(
            turn_id=turn_id_for(self.key, ids),
            chat=work.chat,
            inputs=events,
            # Never an input: the store may hold one it kept before a turn that never committed.
            history=memory.history(without=ids),
            agent=memory.agent,
            handoff=memory.handoff,
            last_inbound_at=last_inbound,
            attempt=attempt,
            interrupted_tool_calls=interrupted,
            summary=memory.summary,
        )

    async def _attempt(
        self,
        work: _Work,
        request: TurnRequest,
        journal: ToolCallJournal,
        policy: DoubleTextingPolicy,
    ) -> TurnResult | None:
        """Run the turn, reacting to arrivals. None: interrupted (the caller reruns it)."""
        rt = self._rt
        # The turn's task starts with its ids in its context (and only it: reset right after).
        with log_context(wamid=request.input_ids, turn_id=request.turn_id):
            turn = asyncio.ensure_future(rt.hooks.run_turn(request, journal))
        limit = rt.config.turn_timeout_s
        timer = rt.timer(limit) if limit is not None else None
        try:
            while not turn.done():
                watched: set[asyncio.Future[Any]] = {turn, _arrival(work)}
                if timer is not None:
                    watched.add(timer)
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                if turn.done():
                    break
                if timer is not None and timer.done():
                    await _cancel(turn)
                    timeout = TurnTimeoutError(f"the turn ran past {limit} s")
                    return await self._rt.failure_result(request, timeout, journal)
                new = await self._absorb(work)
                if new and policy.mode is PolicyMode.INTERRUPT:
                    await _cancel(turn)
                    return None
                if new and policy.mode is PolicyMode.REJECT:
                    await self._reject(work, new, policy)
        finally:
            if timer is not None:
                timer.cancel()
            if not turn.done():  # we are being cancelled (the registry closes)
                await _cancel(turn)
        if turn.cancelled():
            return await self._rt.failure_result(
                request, RuntimeError("run_turn was cancelled"), journal
            )
        exc = turn.exception()
        if exc is None:
            result = turn.result()
            if isinstance(result, TurnResult):
                return result
            exc = TypeError(f"run_turn returned {type(result).__name__}, not a TurnResult")
        if not isinstance(exc, Exception):
            raise exc
        return await self._rt.failure_result(request, exc, journal)

    async def _reject(self, work: _Work, new: list[_Pending], policy: DoubleTextingPolicy) -> None:
        """Record messages that came during a turn, send one polite reply per turn, ack them."""
        for pending in new:
            work.pending.remove(pending)
        self._rt.rejected += len(new)
        reply = None
        if not work.replied:
            work.replied = True
            reply = policy.reject_reply
        await self._record_without_turn(work, new, "rejected", reply=reply, deferred=True)

    async def _record_without_turn(
        self,
        work: _Work,
        batch: list[_Pending],
        reason: RecordReason,
        *,
        reply: str | None = None,
        deferred: bool = False,
    ) -> None:
        hooks, config = self._rt.hooks, self._rt.config
        chat = work.chat
        events = tuple(p.event for p in batch)
        try:
            await self._retrying(
                "record_messages", lambda: hooks.record_messages(chat, events, reason)
            )
        except GaveUp as gave_up:
            await self._give_up(work, batch, gave_up)
            return
        history = [history_of_event(p.event, p.sent_at) for p in batch]
        if reply is not None:
            try:
                await hooks.send_reply(chat, reply, events[-1])
                history.append(history_of_part(reply, self._rt.now()))
            except Exception:
                log.exception("session: the %s reply could not be sent", reason)
        await self._ack(self._take_tokens(work, events))
        if deferred:  # goes into the history after the running turn's inputs
            work.deferred.extend(history)
            history = []
        memory = self._memory
        if memory is not None:
            self._memory = memory.after(
                messages=history,
                event_ids=(e.idempotency_key for e in events),
                history_limit=config.history_limit,
                recent_limit=config.recent_ids_limit,
                last_inbound_at=_last_inbound(batch),
            )

    # Plumbing.

    def _take_tokens(self, work: _Work, events: tuple[MessageEvent, ...]) -> tuple[str, ...]:
        tokens: list[str] = []
        for event in events:
            tokens.extend(work.tokens.pop(event.idempotency_key, ()))
        return tuple(tokens)

    async def _ack(self, tokens: tuple[str, ...]) -> None:
        await self._rt.ack(self.key, tokens)

    async def _give_up(
        self, work: _Work, batch: list[_Pending], gave_up: GaveUp, turn_id: str | None = None
    ) -> None:
        """Quarantine these messages and ack them: their chat goes on without them."""
        if not batch:
            return
        events = tuple(p.event for p in batch)
        stored = await self._rt.quarantine(_quarantine(work.chat, events, gave_up, turn_id))
        tokens = self._take_tokens(work, events)
        if stored:
            await self._ack(tokens)
        else:  # left pending in the stream: re-read at the host's next start
            self._rt.unacked -= len(tokens)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        return await self._rt.retrying(self.key, what, call)


def _quarantine(
    chat: ChatKey,
    events: tuple[MessageEvent, ...] | tuple[NonMessageEvent, ...],
    gave_up: GaveUp,
    turn_id: str | None = None,
) -> Quarantine:
    return Quarantine(chat, gave_up.what, events, gave_up.reason, gave_up.description, turn_id)


def _count_turn(result: TurnResult, received: float, committing: float, done: float) -> None:
    agent = result.agent or "none"
    metrics.turns.inc(agent=agent, outcome=result.outcome.value)
    metrics.turn_seconds.observe(done - received, agent=agent)
    metrics.turn_stage_seconds.observe(done - committing, stage="commit")


def _arrival(work: _Work) -> asyncio.Future[None]:
    """A future resolved by the next arrival (at once if one is waiting in the mailbox)."""
    future = work.arrival
    if future is None or future.done():
        future = work.arrival = asyncio.get_running_loop().create_future()
        if work.mailbox:
            future.set_result(None)
    return future


async def _cancel(task: asyncio.Future[TurnResult]) -> None:
    """Cancel the turn and wait until it has unwound (its outcome is retrieved, never raised)."""
    task.cancel()
    await asyncio.wait((task,))
    if not task.cancelled():
        task.exception()
