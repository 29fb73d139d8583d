"""`GET /api/chats/{chat}/turns`: a chat's recent turns with their agent and tool calls, read-only.

What `whatsray test --url` checks a running platform with (docs/stories.md): the agent in charge,
the handoff flag, the turns (agent, outcome, tool calls with their arguments) and how many of the
user's messages are not settled yet (`unanswered`: no turn, forward or quarantine took them). Added
to the admin router by `create_admin_router` when its store can list turns (`TurnsStorePort`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field, ValidationError

from whatsray.admin.guard import AdminProblem
from whatsray.admin.models import normalize_user
from whatsray.store.records import ChatRecord, MessageRecord, ToolCallRecord, TurnRecord
from whatsray.whatsapp.events import ChatKey

__all__ = ["ChatTurnsOut", "TurnsStorePort", "add_turns_routes"]

MAX_TURNS = 200


@runtime_checkable
class TurnsStorePort(Protocol):
    async def get_chat(self, chat: ChatKey | str) -> ChatRecord | None: ...

    async def get_messages(
        self, chat: ChatKey | str, limit: int = 50, before: int | None = None
    ) -> list[MessageRecord]: ...

    async def list_turns(self, chat: ChatKey | str, limit: int = 50) -> list[TurnRecord]: ...

    async def list_tool_calls(self, turn_id: str) -> list[ToolCallRecord]: ...


class ToolCallOut(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(description="The model's arguments, parsed ({} if not JSON).")
    status: str = Field(description="`ok`, `error` or `cancelled`.")
    result: str


class TurnOut(BaseModel):
    turn_id: str
    agent: str | None
    outcome: str
    agent_outcome: str | None
    input_ids: list[str]
    reply_ids: list[str]
    started_at: float
    finished_at: float | None
    tool_calls: list[ToolCallOut]


class ChatTurnsOut(BaseModel):
    chat: str
    agent: str | None = Field(description="The agent in charge of the chat now.")
    handoff: bool
    unanswered: int = Field(
        description="Inbound messages among the last 50 not settled yet (no turn took them)."
    )
    turns: list[TurnOut] = Field(description="Oldest first.")


def _arguments(text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def add_turns_routes(
    router: APIRouter,
    *,
    store: object,
    numbers: tuple[str, ...],
    not_found: dict[int | str, dict[str, Any]],
) -> None:
    """Add `GET /chats/{chat}/turns` to `router` if `store` can list turns (else nothing)."""
    if not isinstance(store, TurnsStorePort):
        return
    turns_store: TurnsStorePort = store

    async def chat_turns(
        chat: Annotated[
            str,
            Path(
                min_length=1,
                max_length=300,
                description="`phone_number_id:user` (URL-encoded), or a user (default number).",
            ),
        ],
        limit: Annotated[int, Query(ge=1, le=MAX_TURNS)] = 50,
    ) -> ChatTurnsOut:
        number, sep, user = chat.partition(":")
        if not sep:
            number, user = numbers[0], chat
        try:
            key = ChatKey(phone_number_id=number.strip(), user=normalize_user(user) or user.strip())
        except ValidationError:
            raise AdminProblem.invalid(
                ("path", "chat"),
                f"{chat[:64]!r} is not a chat: use 'phone_number_id:user' or a user's number",
                "invalid_chat",
            ) from None
        record = await turns_store.get_chat(key)
        if record is None:
            raise AdminProblem(404, "not_found", f"no chat {str(key)!r}")
        turns = await turns_store.list_turns(key, limit)
        out = []
        for turn in sorted(turns, key=lambda t: t.started_at):
            calls = await turns_store.list_tool_calls(turn.turn_id)
            out.append(
                TurnOut(
                    **turn.model_dump(
                        include={
                            "turn_id",
                            "agent",
                            "outcome",
                            "agent_outcome",
                            "started_at",
                            "finished_at",
                        }
                    ),
                    input_ids=list(turn.input_ids),
                    reply_ids=list(turn.reply_ids),
                    tool_calls=[
                        ToolCallOut(
                            name=c.name,
                            arguments=_arguments(c.arguments),
                            status=c.status,
                            result=c.result,
                        )
                        for c in sorted(calls, key=lambda c: c.idx)
                    ],
                )
            )
        messages = await turns_store.get_messages(key, 50)
        unanswered = sum(1 for m in messages if m.direction == "in" and m.outcome is None)
        return ChatTurnsOut(
            chat=str(key),
            agent=record.agent,
            handoff=record.handoff,
            unanswered=unanswered,
            turns=out,
        )

    router.add_api_route(
        "/chats/{chat}/turns",
        chat_turns,
        methods=["GET"],
        operation_id="chat_turns",
        summary="A chat's recent turns (agent, outcome, tool calls), oldest first",
        responses=not_found,
    )
