"""The session hooks of one SessionHost, built over the store, the router, the agents and outboxes.

Everything a session does to the outside world goes through here; `docs/sessions.md` states the
contract of each hook (commit-or-raise, ack after commit, idempotent status updates).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from whatsray.agents.config import AgentsConfig
from whatsray.observability.logs import log_ids
from whatsray.pipeline.committer import TurnCommitter, outbound_items
from whatsray.pipeline.handoff import HandoffDesk
from whatsray.pipeline.ports import AgentsPort, OutboxPort, RouterPort, StorePort
from whatsray.pipeline.quarantine import QuarantineDesk
from whatsray.pipeline.relays import ReadReceipts, StatusRelay
from whatsray.pipeline.turn_runner import TurnRunner
from whatsray.pipeline.waiting import WaitingNotice
from whatsray.session.config import SessionConfig, SessionHooks
from whatsray.session.policies import DoubleTextingPolicy
from whatsray.session.state import HistoryMessage, SessionState
from whatsray.session.turns import (
    NonMessageEvent,
    RecordReason,
    ToolCallJournal,
    TurnOutcome,
    TurnRequest,
    TurnResult,
)
from whatsray.store.records import MessageRecord
from whatsray.whatsapp.events import ChatKey, MessageEvent, OtherEvent, StatusEvent
from whatsray.whatsapp.parsing import ECHOES_FIELD

log = logging.getLogger(__name__)


def history_message(record: MessageRecord) -> HistoryMessage:
    inbound = record.direction == "in"
    return HistoryMessage(
        role="user" if inbound else "assistant",
        text=record.text if record.text is not None else f"[{record.type}]",
        at=record.created_at,
        message_id=record.id if inbound else None,
    )


class StateLoader:
    """Rebuilds a chat's session state from the store (on activation, after any restart).

    The operator's own chat is always "handed off": the bot never answers the operator, whose
    messages are relayed to users instead (`HandoffDesk.relay`)."""

    def __init__(
        self, store: StorePort, config: SessionConfig, desk: HandoffDesk | None = None
    ) -> None:
        self._store = store
        self._config = config
        self._desk = desk

    async def __call__(self, chat: ChatKey) -> SessionState:
        state = await self._load(chat)
        if self._desk is not None and await self._desk.is_operator(chat):
            return replace(state, handoff=True)
        return state

    async def _load(self, chat: ChatKey) -> SessionState:
        snapshot = await self._store.load_session(chat)
        if snapshot is None:
            return SessionState()
        records = await self._store.recent_messages(chat, self._config.history_limit)
        # Only inputs a committed turn consumed count as done: a stored but unanswered message
        # that is redelivered must still get its turn.
        done = tuple(r.id for r in records if r.direction == "in" and r.turn_id is not None)
        return SessionState(
            history=tuple(history_message(r) for r in records),
            agent=snapshot.agent,
            handoff=snapshot.handoff,
            last_inbound_at=snapshot.last_inbound_at,
            recent_event_ids=done,
            summary=snapshot.summary,
        ).bounded(self._config.history_limit, self._config.recent_ids_limit)


def policies_from(config: AgentsConfig) -> Callable[[str | None], DoubleTextingPolicy]:
    """Each agent's double-texting policy; the default agent's for a chat without one yet."""
    policies = {
        agent.name: DoubleTextingPolicy.parse(
            agent.double_texting.policy,
            quiet_period_s=agent.double_texting.quiet_period_s,
            max_wait_s=agent.double_texting.max_wait_s,
            reject_reply=agent.double_texting.reject_reply,
        )
        for agent in config.agents
    }
    default = policies[config.router.default_agent]
    return lambda agent: policies.get(agent, default) if agent else default


def build_session_hooks(
    *,
    store: StorePort,
    router: RouterPort,
    agents: AgentsPort,
    outbox_for: Callable[[str], OutboxPort],
    ack: Callable[[tuple[str, ...]], Awaitable[None]],
    agents_config: AgentsConfig,
    session_config: SessionConfig,
    now: Callable[[], float],
    waiting: WaitingNotice | None = None,
    desk: HandoffDesk | None = None,
    committer: TurnCommitter | None = None,
    statuses: StatusRelay | None = None,
    reads: ReadReceipts | None = None,
    quarantine: QuarantineDesk | None = None,
) -> SessionHooks:
    """`desk`: human handoff (forwarding to the operator, relaying the operator's replies,
    business-app echoes); without it handed-off messages are only stored. `committer`,
    `statuses` and `reads` batch what many sessions send (the host shares them); `quarantine`
    stores what sessions give up on."""
    committer = committer or TurnCommitter(store, outbox_for, now=now)
    quarantine = quarantine or QuarantineDesk(store, now=now)
    statuses = statuses or StatusRelay(outbox_for)
    reads = reads or ReadReceipts(outbox_for)

    async def on_status(event: NonMessageEvent) -> None:
        if isinstance(event, StatusEvent) and event.phone_number_id:
            await statuses.apply(event)
        elif isinstance(event, OtherEvent) and event.field == ECHOES_FIELD and desk is not None:
            await desk.on_echo(event)
        else:
            log.info("no handler for %s event %s", event.kind, event.idempotency_key)

    async def record_messages(
        chat: ChatKey, events: tuple[MessageEvent, ...], reason: RecordReason
    ) -> None:
        ids = log_ids(wamid=[e.idempotency_key for e in events], chat=chat)
        log.info("recording %d message(s) without a turn (%s)", len(events), reason, extra=ids)
        # Handed off: a person answers; rejected: the policy's reply answered (docs/errors.md).
        await committer.record_inputs(events, "handed_off" if reason == "handoff" else "recorded")
        # Stored first: a retry of this hook (it is retried until it returns) records nothing
        # new, and the desk's ids are derived from the messages, so nothing is sent twice.
        if desk is None or reason != "handoff":
            return
        if await desk.is_operator(chat):
            await desk.relay(chat, events)
        else:
            await desk.forward(chat, events)

    async def send_text(chat: ChatKey, key: str, text: str) -> None:
        """Record, then send; `key` names the message, so sending it again sends nothing."""
        items = outbound_items(chat, key, [text], now())
        fresh = [await store.record_outbound(item) for item in items]
        await outbox_for(chat.phone_number_id).dispatch(items, fresh)

    async def send_reply(chat: ChatKey, text: str, replied_to: MessageEvent) -> None:
        # The id derives from the message replied to: a redelivery cannot send it twice.
        await send_text(chat, f"reply-to:{replied_to.message_id}", text)

    runner = TurnRunner(
        router,
        agents,
        reads,
        agents_config=agents_config,
        open_window=lambda chat, at: store.update_chat(chat, last_inbound_at=at),
        send_text=send_text,
        now=now,
        waiting=waiting,
    )

    async def run_turn(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        if request.handoff and desk is not None:
            # The flag was set (admin, echo, operator) while the session held an older state
            # and had already queued these messages for a turn: no bot turn, they go to the
            # person in charge as handed-off messages do (and are committed with the turn).
            if await desk.is_operator(request.chat):
                await desk.relay(request.chat, request.inputs)
            else:
                await desk.forward(request.chat, request.inputs)
            return TurnResult(agent=request.agent, outcome=TurnOutcome.HANDOFF)
        return await runner(request, journal)

    return SessionHooks(
        load_state=StateLoader(store, session_config, desk),
        run_turn=run_turn,
        commit_turn=committer.commit,
        ack=ack,
        on_status=on_status,
        record_messages=record_messages,
        send_reply=send_reply,
        policy_for=policies_from(agents_config),
        quarantine=quarantine.session_items,
    )
