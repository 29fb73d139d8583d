"""Human handoff: the operator's side of a chat the bot stays out of (docs/handoff.md).

While a chat's handoff flag is set the session runs no turns; its messages reach
`record_messages(..., "handoff")`, which stores them and calls `HandoffDesk.forward`: each one goes
to the operator number as `"<name> (<number>): <text>"`. The operator's own messages to the
business number arrive in the operator's chat, which is always handled without a turn, and
`HandoffDesk.relay` sends them to the user of the chat they address:

1. a reply (WhatsApp's quote) to a message the desk forwarded, or to a handoff notice: that chat;
2. otherwise the most recently active chat in handoff on that business number;
3. none: the operator is told so.

`/release` (alone, optionally quoting) hands the addressed chat back to the bot. Business-app
echoes (`smb_message_echoes`) are stored as outbound messages and set the flag (`on_echo`).
Every message the desk sends has an id derived from the message it answers, so a redelivered or
retried one sends nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from whatsray.observability.logs import log_ids
from whatsray.outbox.ledger import OutboundItem, OutboundRecord
from whatsray.pipeline.ports import OutboxPort
from whatsray.store.records import ChatRecord, Contact, TurnRecord
from whatsray.tools.outbound import recipient
from whatsray.whatsapp.content_parsing import read_content
from whatsray.whatsapp.events import ChatKey, MessageEvent, OtherEvent
from whatsray.whatsapp.message_content import content_text
from whatsray.whatsapp.messages import TextMessage, is_bsuid

__all__ = [
    "HANDOFF_NOTICE",
    "RELEASE_COMMAND",
    "HandoffDesk",
    "HandoffStorePort",
    "chat_of_handoff_id",
]

log = logging.getLogger(__name__)

HANDOFF_NOTICE = "handoff_notice"  # the purpose of what goes to the operator (template outside)
RELEASE_COMMAND = "/release"
_PREFIX = "handoff:"
_TOOL_NOTICE = ":handoff"  # `{turn_id}:handoff`: the handoff_to_human tool's notice
_TEMPLATE = ":template"


class HandoffStorePort(Protocol):
    async def record_outbound(self, item: OutboundItem) -> bool: ...

    async def update_chat(self, chat: ChatKey | str, *, handoff: bool) -> None: ...

    async def get_contact(self, chat: ChatKey | str) -> Contact | None: ...

    async def get_turn(self, turn_id: str) -> TurnRecord | None: ...

    async def get_outbound_by_wamid(self, wamid: str) -> OutboundRecord | None: ...

    async def handoff_chats(
        self,
        phone_number_id: str | None = None,
        *,
        idle_before: float | None = None,
        limit: int = 1000,
    ) -> list[ChatRecord]: ...

    async def record_echo(
        self,
        chat: ChatKey | str,
        wamid: str,
        *,
        type_: str,
        text: str | None,
        raw: dict[str, Any],
        at: float,
    ) -> bool: ...


def handoff_id(chat: ChatKey, kind: str, source: str) -> str:
    """`handoff:<chat>:<kind>:<source id>`: names the user's chat, so a quote finds it."""
    return f"{_PREFIX}{chat}:{kind}:{source}"


def chat_of_handoff_id(outbound_id: str) -> ChatKey | None:
    """The user's chat named by a desk message's id (its template's id too); None otherwise."""
    if not outbound_id.startswith(_PREFIX):
        return None
    parts = outbound_id[len(_PREFIX) :].split(":")
    if len(parts) < 3:
        return None
    try:
        return ChatKey(phone_number_id=parts[0], user=parts[1])
    except ValueError:
        return None


class HandoffDesk:
    """Forwards, relays and flips the flag. `changed(chat)` makes the chat's live session reload
    its state (the host routes it to the session host that owns the chat)."""

    def __init__(
        self,
        store: HandoffStorePort,
        outbox_for: Callable[[str], OutboxPort],
        *,
        operator_number: str | None,
        changed: Callable[[ChatKey], Awaitable[None]],
        now: Callable[[], float],
        release_after_s: float | None = None,
    ) -> None:
        self._store = store
        self._outbox_for = outbox_for
        self.operator_number = operator_number or None
        self._changed = changed
        self._now = now
        self.release_after_s = release_after_s or None
        self.forwarded = 0
        self.relayed = 0
        self.released = 0

    # -- who is the operator ---------------------------------------------------------------------

    def operator_chat(self, phone_number_id: str) -> ChatKey | None:
        if self.operator_number is None:
            return None
        return ChatKey(phone_number_id=phone_number_id, user=self.operator_number)

    async def is_operator(self, chat: ChatKey) -> bool:
        """The operator's own chat (keyed by the number, or by a BSUID whose phone it is)."""
        if self.operator_number is None:
            return False
        if chat.user == self.operator_number:
            return True
        if not is_bsuid(chat.user):
            return False
        contact = await self._store.get_contact(chat)
        return contact is not None and contact.phone == self.operator_number

    # -- the flag --------------------------------------------------------------------------------

    async def set_handoff(self, chat: ChatKey, on: bool) -> None:
        """Store the flag, then tell the chat's live session to reload it."""
        await self._store.update_chat(chat, handoff=on)
        await self._changed(chat)
        what = "handed to a person" if on else "released to the bot"
        log.info("chat %s", what, extra=log_ids(chat=chat))

    async def release_idle(self, owns: Callable[[ChatKey], bool] = lambda _: True) -> list[ChatKey]:
        """Release the chats (of those `owns` accepts) idle for `release_after_s`."""
        if self.release_after_s is None:
            return []
        idle = await self._store.handoff_chats(idle_before=self._now() - self.release_after_s)
        released = []
        for record in idle:
            chat = ChatKey.parse(record.chat)
            if owns(chat) and not await self.is_operator(chat):
                await self.set_handoff(chat, False)
                released.append(chat)
        self.released += len(released)
        return released

    # -- user -> operator ------------------------------------------------------------------------

    async def forward(self, chat: ChatKey, events: Sequence[MessageEvent]) -> None:
        """Send each message of a handed-off chat to the operator (once per message)."""
        operator = self.operator_chat(chat.phone_number_id)
        if operator is None or not events:
            return
        contact = await self._store.get_contact(chat)
        label = _label(chat, contact, events[-1])
        for event in events:
            text = f"{label}: {event.text or f'[{event.raw_type or event.type.value}]'}"
            await self._send(
                operator, handoff_id(chat, "fwd", event.idempotency_key), text, HANDOFF_NOTICE
            )
            self.forwarded += 1

    # -- operator -> user ------------------------------------------------------------------------

    async def relay(self, operator: ChatKey, events: Sequence[MessageEvent]) -> None:
        """Send each of the operator's messages to the chat it addresses (see the module doc)."""
        for event in events:
            key = event.idempotency_key
            target = await self._addressed(operator.phone_number_id, event)
            text = (event.text or "").strip()
            if target is None:
                await self._send(
                    operator,
                    f"{_PREFIX}{operator}:none:{key}",
                    "No chat is handed off to you on this number: nothing was sent.",
                    HANDOFF_NOTICE,
                )
            elif text.lower() == RELEASE_COMMAND:
                await self.set_handoff(target, False)
                await self._send(
                    operator,
                    handoff_id(target, "released", key),
                    f"{target.user} is back with the bot.",
                    HANDOFF_NOTICE,
                )
            elif event.text is None:
                await self._send(
                    operator,
                    handoff_id(target, "unsupported", key),
                    f"Only text is relayed; {target.user} got nothing.",
                    HANDOFF_NOTICE,
                )
            else:
                await self._send(target, handoff_id(target, "relay", key), event.text, None)
                self.relayed += 1

    async def _addressed(self, phone_number_id: str, event: MessageEvent) -> ChatKey | None:
        quoted = event.context.quoted_message_id if event.context is not None else None
        if quoted is not None:
            record = await self._store.get_outbound_by_wamid(quoted)
            if record is not None:
                chat = await self._chat_of_notice(record.outbound_id)
                if chat is not None and not await self.is_operator(chat):
                    return chat
        for handed in await self._store.handoff_chats(phone_number_id, limit=10):
            chat = ChatKey.parse(handed.chat)
            if not await self.is_operator(chat):
                return chat
        return None

    async def _chat_of_notice(self, outbound_id: str) -> ChatKey | None:
        chat = chat_of_handoff_id(outbound_id)
        if chat is not None:
            return chat
        base = outbound_id.removesuffix(_TEMPLATE)
        if base.endswith(_TOOL_NOTICE):  # the tool's notice: the turn names the chat
            turn = await self._store.get_turn(base.removesuffix(_TOOL_NOTICE))
            if turn is not None:
                return ChatKey.parse(turn.chat)
        return None

    # -- business app echoes ---------------------------------------------------------------------

    async def on_echo(self, event: OtherEvent) -> None:
        """A message the business sent from the WhatsApp Business app: a person is handling the
        chat. Stored as outbound in its history and the flag set (one transaction), once."""
        chat = event.chat
        echoes = event.raw.get("message_echoes") if isinstance(event.raw, dict) else None
        if chat is None or not isinstance(echoes, list) or not echoes:
            log.warning("echo %s names no chat: ignored", event.idempotency_key)
            return
        if await self.is_operator(chat):
            return
        echo = echoes[0]
        wamid = echo.get("id") if isinstance(echo, dict) else None
        if not isinstance(wamid, str) or not wamid:
            log.warning("echo %s has no message id: ignored", event.idempotency_key)
            return
        type_, content = read_content(echo)
        at = event.timestamp.timestamp() if event.timestamp is not None else self._now()
        text = content_text(content)
        if await self._store.record_echo(
            chat, wamid, type_=type_.value, text=text, raw=echo, at=at
        ):
            await self._changed(chat)
            what = "the business answered from its app; handed to a person"
            log.info("chat: %s", what, extra=log_ids(chat=chat))

    # -- plumbing --------------------------------------------------------------------------------

    async def _send(self, to: ChatKey, outbound_id: str, text: str, purpose: str | None) -> None:
        """Record, then dispatch (the outbox sends a recorded id once)."""
        address = recipient(to)
        item = OutboundItem(
            outbound_id=outbound_id,
            chat=str(to),
            phone_number_id=to.phone_number_id,
            to=address,
            body=TextMessage(to=address, body=text[:4096]).to_graph_body(),
            created_at=self._now(),
            purpose=purpose,
        )
        new = await self._store.record_outbound(item)
        # Fresh when recorded just now: sent at once (an older record waits the grace first).
        await self._outbox_for(to.phone_number_id).dispatch([item], fresh=[new])


def _label(chat: ChatKey, contact: Contact | None, event: MessageEvent) -> str:
    name = event.profile_name or (contact.profile_name if contact is not None else None)
    phone = event.from_phone or (contact.phone if contact is not None else None)
    who = f"+{phone}" if phone else chat.user
    return f"{name} ({who})" if name else who
