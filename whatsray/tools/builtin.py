"""The built-in tools: `send_message`, `get_messages`, `search_contacts`, `handoff_to_human`.

Each acts on the chat of the current turn. Reaching another chat needs a permission the agent is
granted in agents.yaml (`message_any_chat`, `read_any_chat`); the model cannot grant it, whatever
it writes in the arguments. docs/tools.md describes them for people writing agents.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pydantic import Field

from whatsray.store.records import MessageRecord
from whatsray.tools.base import Tool, ToolArguments, ToolContext, ToolError
from whatsray.tools.outbound import text_item
from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.limits import MAX_TEXT_BODY_CHARS
from whatsray.whatsapp.messages import is_bsuid

__all__ = [
    "GET_MESSAGES",
    "HANDOFF_TO_HUMAN",
    "MESSAGE_ANY_CHAT",
    "READ_ANY_CHAT",
    "READ_CONTACTS",
    "SEARCH_CONTACTS",
    "SEND_MESSAGE",
    "handoff_notice",
    "resolve_chat",
]

log = logging.getLogger(__name__)

# Permissions (granted per agent in agents.yaml).
MESSAGE_ANY_CHAT = "message_any_chat"  # send_message to a chat other than the turn's
READ_ANY_CHAT = "read_any_chat"  # get_messages of a chat other than the turn's
READ_CONTACTS = "read_contacts"  # search_contacts at all

_PHONE_CHARS = re.compile(r"^\+?[\d\s\-().]{5,25}$")


def resolve_chat(ctx: ToolContext, target: str | None, permission: str, doing: str) -> ChatKey:
    """The chat a tool call means: the turn's own (None, or the same user), or another one on
    the same business number, which needs `permission`. Accepts a phone number in any common
    format, a BSUID, or a chat key `phone_number_id:user`."""
    if target is None or not target.strip():
        return ctx.chat
    text = target.strip()
    if ":" in text:
        try:
            chat = ChatKey.parse(text)
        except ValueError as exc:
            raise ToolError(f"not a chat: {text!r} ({exc})") from None
        if chat.phone_number_id != ctx.chat.phone_number_id:
            raise ToolError("only chats of this business number can be reached")
    elif _PHONE_CHARS.match(text):
        digits = re.sub(r"\D", "", text)
        if not 5 <= len(digits) <= 15:
            raise ToolError(f"not a phone number: {text!r}")
        chat = ChatKey(phone_number_id=ctx.chat.phone_number_id, user=digits)
    elif is_bsuid(text):
        chat = ChatKey(phone_number_id=ctx.chat.phone_number_id, user=text)
    else:
        raise ToolError(f"not a phone number, user id or chat: {text!r}")
    if chat != ctx.chat:
        ctx.require(permission, doing)
    return chat


# --- send_message ------------------------------------------------------------------------------


class SendMessageArgs(ToolArguments):
    text: str = Field(min_length=1, max_length=MAX_TEXT_BODY_CHARS, description="What to send.")
    to: str | None = Field(
        None,
        description="Leave empty to write to the user of this chat. Another phone number only "
        "if this agent may message other chats.",
    )


async def send_message(args: SendMessageArgs, ctx: ToolContext) -> dict[str, Any]:
    chat = resolve_chat(ctx, args.to, MESSAGE_ANY_CHAT, "sending to another chat")
    if not args.text.strip():
        raise ToolError("the text is blank")
    outbound_id, n = ctx.next_send()
    try:
        item = text_item(
            chat, outbound_id, args.text, turn_id=ctx.turn_id, part=n, created_at=ctx.now()
        )
    except ValueError as exc:
        raise ToolError(f"cannot send this message: {exc}") from None
    new = await ctx.services.send(item)
    return {"sent": True, "to": chat.user, "message_id": outbound_id, "repeat": not new}


SEND_MESSAGE = Tool(
    name="send_message",
    description="Send a WhatsApp text message now, before your final reply (for example a "
    "confirmation or a separate piece of information). Your final reply is sent anyway.",
    arguments=SendMessageArgs,
    function=send_message,
    extra_permissions=frozenset({MESSAGE_ANY_CHAT}),
)


# --- get_messages ------------------------------------------------------------------------------


class GetMessagesArgs(ToolArguments):
    limit: int = Field(20, ge=1, le=50, description="How many of the latest messages.")
    chat: str | None = Field(
        None, description="Leave empty for this chat's history (the usual case)."
    )
    before: int | None = Field(
        None, ge=0, description="Only messages before this seq (to page further back)."
    )


def _message_view(record: MessageRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "from": "user" if record.direction == "in" else "business",
        "type": record.type,
        "text": record.text,
        "at": round(record.created_at),
    }


async def get_messages(args: GetMessagesArgs, ctx: ToolContext) -> dict[str, Any]:
    chat = resolve_chat(ctx, args.chat, READ_ANY_CHAT, "reading another chat")
    records = await ctx.services.get_messages(chat, args.limit, args.before)
    return {"chat": chat.user, "messages": [_message_view(r) for r in records]}


GET_MESSAGES = Tool(
    name="get_messages",
    description="Read the latest messages of this chat (both sides, oldest first), for "
    "example to find an order number the user gave earlier.",
    arguments=GetMessagesArgs,
    function=get_messages,
    extra_permissions=frozenset({READ_ANY_CHAT}),
)


# --- search_contacts ---------------------------------------------------------------------------


class SearchContactsArgs(ToolArguments):
    query: str = Field(min_length=1, max_length=200, description="A name or part of a number.")
    limit: int = Field(10, ge=1, le=50)


async def search_contacts(args: SearchContactsArgs, ctx: ToolContext) -> dict[str, Any]:
    contacts = await ctx.services.search_contacts(args.query, args.limit)
    return {
        "contacts": [
            {
                "chat": c.chat,
                "name": c.profile_name,
                "phone": c.phone,
                "last_seen": round(c.last_seen),
            }
            for c in contacts
        ]
    }


SEARCH_CONTACTS = Tool(
    name="search_contacts",
    description="Find customers who wrote to this business, by name or phone number.",
    arguments=SearchContactsArgs,
    function=search_contacts,
    permissions=frozenset({READ_CONTACTS}),
)


# --- handoff_to_human --------------------------------------------------------------------------


class HandoffArgs(ToolArguments):
    reason: str = Field(
        min_length=1, max_length=500, description="Why a person is needed, in one sentence."
    )


def handoff_notice(chat: ChatKey, reason: str) -> str:
    return f"Chat {chat.user} needs a person: {reason}"


async def handoff_to_human(args: HandoffArgs, ctx: ToolContext) -> dict[str, Any]:
    """Hands the chat over first (the turn's result carries it), then tells the operator. A
    failed notification is reported to the model but never undoes the handoff."""
    ctx.effects.request_handoff(args.reason)
    operator = ctx.services.operator_number
    if not operator:
        log.warning("chat %s handed to a person, but no operator number is set", ctx.chat)
        return {"handed_off": True, "operator_notified": False}
    try:
        to = ChatKey(phone_number_id=ctx.chat.phone_number_id, user=operator)
        item = text_item(
            to,
            f"{ctx.turn_id}:handoff",
            handoff_notice(ctx.chat, args.reason),
            turn_id=ctx.turn_id,
            part=0,
            created_at=ctx.now(),
            purpose="handoff_notice",  # the operator's window is often closed: a template
        )
        await ctx.services.send(item)
    except Exception as exc:  # the chat is handed over either way
        log.warning("chat %s: the operator could not be notified: %s", ctx.chat, exc)
        return {"handed_off": True, "operator_notified": False}
    return {"handed_off": True, "operator_notified": True}


HANDOFF_TO_HUMAN = Tool(
    name="handoff_to_human",
    description="Hand this chat to a person from the team: when the user asks for a human, "
    "is upset, or needs something you cannot do. The bot stops answering this chat.",
    arguments=HandoffArgs,
    function=handoff_to_human,
)
