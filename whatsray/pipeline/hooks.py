"""The session hooks of one SessionHost, built over the store, the router, the agents and outboxes.

Everything a session does to the outside world goes through here; `docs/sessions.md` states the
contract of each hook (commit-or-raise, ack after commit, idempotent status updates).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from whatsray.agents.config import AgentsConfig
from whatsray.pipeline.committer import TurnCommitter, outbound_items
from whatsray.pipeline.ports import AgentsPort, OutboxPort, RouterPort, StorePort
from whatsray.pipeline.turn_runner import TurnRunner
from whatsray.pipeline.waiting import WaitingNotice
from whatsray.session.config import SessionConfig, SessionHooks
from whatsray.session.policies import DoubleTextingPolicy
from whatsray.session.state import HistoryMessage, SessionState
from whatsray.session.turns import NonMessageEvent, RecordReason
from whatsray.store.records import MessageRecord
from whatsray.whatsapp.events import ChatKey, MessageEvent, StatusEvent

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
    """Rebuilds a chat's session state from the store (on activation, after any restart)."""

    def __init__(self, store: StorePort, config: SessionConfig) -> None:
        self._store = store
        self._config = config

    async def __call__(self, chat: ChatKey) -> SessionState:
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
) -> SessionHooks:
    committer = TurnCommitter(store, outbox_for, now=now)

    async def on_status(event: NonMessageEvent) -> None:
        if isinstance(event, StatusEvent) and event.phone_number_id:
            await outbox_for(event.phone_number_id).apply_status(event)
        else:
            log.info("no handler for %s event %s", event.kind, event.idempotency_key)

    async def record_messages(
        chat: ChatKey, events: tuple[MessageEvent, ...], reason: RecordReason
    ) -> None:
        log.info("recording %d message(s) of %s without a turn (%s)", len(events), chat, reason)
        await committer.record_inputs(events)

    async def send_text(chat: ChatKey, key: str, text: str) -> None:
        """Record, then send; `key` names the message, so sending it again sends nothing."""
        items = outbound_items(chat, key, [text], now())
        for item in items:
            await store.record_outbound(item)
        await outbox_for(chat.phone_number_id).dispatch(items)

    async def send_reply(chat: ChatKey, text: str, replied_to: MessageEvent) -> None:
        # The id derives from the message replied to: a redelivery cannot send it twice.
        await send_text(chat, f"reply-to:{replied_to.message_id}", text)

    runner = TurnRunner(
        router,
        agents,
        outbox_for,
        agents_config=agents_config,
        open_window=lambda chat, at: store.update_chat(chat, last_inbound_at=at),
        send_text=send_text,
        now=now,
        waiting=waiting,
    )
    return SessionHooks(
        load_state=StateLoader(store, session_config),
        run_turn=runner,
        commit_turn=committer.commit,
        ack=ack,
        on_status=on_status,
        record_messages=record_messages,
        send_reply=send_reply,
        policy_for=policies_from(agents_config),
    )
