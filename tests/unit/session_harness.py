"""Fakes for the session tests: a controllable clock and an in-memory backend behind every hook.

The backend acts like the real store + stream would: commits are remembered and `load_state`
rebuilds a chat's state from them, and every hook call lands, in order, in one `timeline` so a
test can check what happened before what (commit before ack, and so on).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from whatsray.session import (
    DoubleTextingPolicy,
    HistoryMessage,
    InboundEntry,
    NonMessageEvent,
    PolicyMode,
    Quarantine,
    RecordReason,
    SessionConfig,
    SessionHooks,
    SessionRegistry,
    SessionState,
    ToolCallJournal,
    TurnOutcome,
    TurnRequest,
    TurnResult,
)
from whatsray.whatsapp.events import ChatKey, MessageEvent, StatusEvent, StatusValue
from whatsray.whatsapp.message_content import MessageType, TextContent

PHONE_ID = "106540352242922"
START = 1_700_000_000.0


class FakeClock:
    """`now` and `sleep` on a clock that moves only when the test calls `advance`."""

    def __init__(self, start: float = START) -> None:
        self.time = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.time + seconds, next(self._seq), future))
        await future  # a cancelled sleeper is skipped by advance()

    @property
    def deadlines(self) -> list[float]:
        """When the live sleepers wake, soonest first."""
        return sorted(d for d, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper due on the way (and letting it run) in order."""
        target = self.time + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self.time = max(self.time, deadline)
            future.set_result(None)
            await settle()
        self.time = target
        await settle()


async def settle(rounds: int = 50) -> None:
    """Let every ready task run as far as it can (nothing here does real I/O)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def eventually(condition: Callable[[], bool], rounds: int = 5000) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def idle(registry: SessionRegistry, guard_s: float = 20.0) -> None:
    """`registry.wait_idle()`, failing instead of hanging when a broken session never finishes."""
    try:
        async with asyncio.timeout(guard_s):
            await registry.wait_idle()
    except TimeoutError:
        raise AssertionError("sessions still busy: something never finished") from None


def chat_key(user: str = "15550001111") -> ChatKey:
    return ChatKey(phone_number_id=PHONE_ID, user=user)


def message(
    wamid: str, text: str | None = None, chat: ChatKey | None = None, at: float | None = None
) -> MessageEvent:
    chat = chat or chat_key()
    return MessageEvent(
        idempotency_key=wamid,
        chat=chat,
        phone_number_id=chat.phone_number_id,
        message_id=wamid,
        type=MessageType.TEXT,
        raw_type="text",
        content=TextContent(body=text if text is not None else f"text of {wamid}"),
        from_phone=chat.user,
        timestamp=datetime.fromtimestamp(at, UTC) if at is not None else None,
    )


def status(wamid: str, value: StatusValue, chat: ChatKey | None = None) -> StatusEvent:
    chat = chat or chat_key()
    return StatusEvent(
        idempotency_key=f"{wamid}:{value.value}",
        chat=chat,
        phone_number_id=chat.phone_number_id,
        message_id=wamid,
        status=value,
        recipient_id=chat.user,
    )


def entry(event: MessageEvent | StatusEvent, token: str | None = None) -> InboundEntry:
    assert event.chat is not None
    token = token or f"tok-{event.idempotency_key}"
    return InboundEntry(chat=event.chat, event=event, ack_token=token)


def texts(request: TurnRequest) -> list[str | None]:
    return [event.text for event in request.inputs]


RunTurn = Callable[[TurnRequest, ToolCallJournal], Awaitable[TurnResult]]


async def echo(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
    return TurnResult(reply_parts=["echo: " + " | ".join(t or "" for t in texts(request))])


@dataclass
class FakeBackend:
    """Every hook, in memory. `behaviour` is the agent; the lists record what was called."""

    behaviour: RunTurn = echo
    policy: DoubleTextingPolicy = field(default_factory=DoubleTextingPolicy)
    seed: dict[str, SessionState] = field(default_factory=dict)  # state before any commit
    commit_failures: int = 0  # the next N commits raise `failure()`
    load_failures: int = 0  # the next N state loads raise `failure()`
    record_failures: int = 0  # the next N `record_messages` raise `failure()`
    failure: Callable[[], Exception] = lambda: ConnectionError("store unreachable")
    quarantine_failures: int = 0  # the next N quarantine writes raise `failure()`
    quarantined: list[Quarantine] = field(default_factory=list)
    timeline: list[tuple[str, object]] = field(default_factory=list)
    turns: list[TurnRequest] = field(default_factory=list)
    commits: list[tuple[TurnRequest, TurnResult]] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)
    statuses: list[NonMessageEvent] = field(default_factory=list)
    records: list[tuple[str, tuple[str, ...], RecordReason]] = field(default_factory=list)
    replies: list[tuple[str, str, str]] = field(default_factory=list)  # chat, text, replied-to id
    turn_errors: list[tuple[TurnRequest, Exception]] = field(default_factory=list)

    def hooks(self, *, with_error_hook: bool = True) -> SessionHooks:
        return SessionHooks(
            load_state=self.load_state,
            run_turn=self.run_turn,
            commit_turn=self.commit_turn,
            ack=self.ack,
            on_status=self.on_status,
            record_messages=self.record_messages,
            send_reply=self.send_reply,
            on_turn_error=self.on_turn_error if with_error_hook else None,
            policy_for=lambda agent: self.policy,
            quarantine=self.quarantine,
        )

    def registry(
        self,
        clock: FakeClock,
        config: SessionConfig | None = None,
        *,
        with_error_hook: bool = True,
    ) -> SessionRegistry:
        config = config or SessionConfig(turn_timeout_s=None)
        return SessionRegistry(
            self.hooks(with_error_hook=with_error_hook), config, now=clock.now, sleep=clock.sleep
        )

    # The hooks.

    async def load_state(self, chat: ChatKey) -> SessionState:
        key = str(chat)
        if self.load_failures > 0:
            self.load_failures -= 1
            self.timeline.append(("load-failed", key))
            raise self.failure()
        self.loads.append(key)
        self.timeline.append(("load", key))
        state = self.seed.get(key, SessionState())
        history = list(state.history)
        ids = list(state.recent_event_ids)
        for request, result in self.commits:  # what a store would rebuild: all it committed
            if str(request.chat) != key:
                continue
            history += [HistoryMessage("user", e.text or "", 0.0) for e in request.inputs]
            history += [HistoryMessage("assistant", str(p), 0.0) for p in result.reply_parts]
            ids += request.input_ids
        return SessionState(
            history=tuple(history),
            agent=state.agent,
            handoff=state.handoff,
            last_inbound_at=state.last_inbound_at,
            recent_event_ids=tuple(ids),
        )

    async def run_turn(self, request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        self.turns.append(request)
        self.timeline.append(("run", request.input_ids))
        return await self.behaviour(request, journal)

    async def commit_turn(self, request: TurnRequest, result: TurnResult) -> None:
        if self.commit_failures > 0:
            self.commit_failures -= 1
            self.timeline.append(("commit-failed", request.input_ids))
            raise self.failure()
        self.commits.append((request, result))
        self.timeline.append(("commit", request.input_ids))

    async def ack(self, tokens: tuple[str, ...]) -> None:
        self.acks.extend(tokens)
        self.timeline.append(("ack", tokens))

    async def on_status(self, event: NonMessageEvent) -> None:
        self.statuses.append(event)
        self.timeline.append(("status", event.idempotency_key))

    async def record_messages(
        self, chat: ChatKey, events: tuple[MessageEvent, ...], reason: RecordReason
    ) -> None:
        ids = tuple(e.idempotency_key for e in events)
        if self.record_failures > 0:
            self.record_failures -= 1
            self.timeline.append(("record-failed", ids))
            raise self.failure()
        self.records.append((str(chat), ids, reason))
        self.timeline.append(("record", ids))

    async def send_reply(self, chat: ChatKey, text: str, in_reply_to: MessageEvent) -> None:
        self.replies.append((str(chat), text, in_reply_to.idempotency_key))
        self.timeline.append(("reply", text))

    async def quarantine(self, item: Quarantine) -> None:
        if self.quarantine_failures > 0:
            self.quarantine_failures -= 1
            self.timeline.append(("quarantine-failed", item.stage))
            raise self.failure()
        self.quarantined.append(item)
        self.timeline.append(("quarantine", tuple(e.idempotency_key for e in item.events)))

    async def on_turn_error(self, request: TurnRequest, exc: Exception) -> TurnResult:
        self.turn_errors.append((request, exc))
        return TurnResult(reply_parts=["Sorry!"], outcome=TurnOutcome.FAILED, error=repr(exc))

    # Views.

    def turns_of(self, chat: ChatKey) -> list[TurnRequest]:
        return [t for t in self.turns if t.chat == chat]


def policy(mode: PolicyMode, **knobs: float | str) -> DoubleTextingPolicy:
    return DoubleTextingPolicy(mode, **knobs)  # type: ignore[arg-type]
