"""The admin REST API: a FastAPI router the ingress mounts (see docs/admin-api.md).

`create_admin_router(...)` returns an `APIRouter` with every route under `/api`. It only talks
to the store and the outboxes through the small ports in `whatsray.admin.ports`, so the same
router runs in tests (the real `Store` and `Outbox`) and on Ray (actor proxies).

Every route is guarded (`whatsray.admin.guard`): auth before anything else, and every 4xx body
an `ErrorBody` (`error`, `message`, and `detail` for invalid requests). A refused request changes
nothing: every check runs before the one write (`record_outbound`).

The inbound account's routes (unresolved items, the quarantine) are in
`whatsray.admin.account_api`; `create_admin_router` adds them to the one router.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Security
from fastapi.security import HTTPBearer
from pydantic import ValidationError

from whatsray.admin.account_api import add_account_routes
from whatsray.admin.analytics_api import add_analytics_routes
from whatsray.admin.auth import BearerAuth
from whatsray.admin.guard import AdminProblem, guarded_route_class
from whatsray.admin.models import (
    ChatOut,
    ChatsPage,
    ContactOut,
    ContactsPage,
    DeadLetterOut,
    DeadLettersPage,
    ErrorBody,
    HandoffChatsOut,
    InferenceOut,
    MessageOut,
    MessagesPage,
    OutboundOut,
    SendMessageRequest,
    SendMessageResponse,
    normalize_user,
)
from whatsray.admin.numbers import NumberFilter, served_number
from whatsray.admin.paging import MAX_OFFSET, MAX_PAGE
from whatsray.admin.ports import (
    AdminInboxPort,
    AdminOutboxPort,
    AdminStorePort,
    HandoffControl,
    InferenceReport,
    StatusReport,
)
from whatsray.admin.status_models import StatusOut
from whatsray.admin.turns_api import add_turns_routes
from whatsray.outbox.ledger import OutboundItem, OutboundRecord
from whatsray.outbox.window import WINDOW_SECONDS, window_open
from whatsray.store.records import ChatRecord
from whatsray.whatsapp.errors import MessageValidationError
from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.messages import TextMessage, is_bsuid

__all__ = ["AdminProblem", "create_admin_router", "idempotent_outbound_id"]

log = logging.getLogger(__name__)

MAX_SEQ = 2**63 - 1
CONTACT_PAGE = 100
# How many phone-number matches to look through when a chat is keyed by the user's BSUID.
_CONTACT_LOOKUP = 50

# Declared for the OpenAPI document only ("Authorize" in /docs): the check itself is in
# `guarded_route_class`, which runs before FastAPI resolves any dependency or parameter.
_BEARER_SCHEME = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The admin token (settings: `WHATSRAY_ADMIN_TOKEN`).",
)

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No bearer token (`WWW-Authenticate: Bearer`)."},
    403: {"model": ErrorBody, "description": "A wrong bearer token."},
    422: {"model": ErrorBody, "description": "Invalid parameters or body; `message` says which."},
}


def _new_outbound_id() -> str:
    return f"admin:{uuid.uuid4().hex}"


def idempotent_outbound_id(phone_number_id: str, idempotency_key: str) -> str:
    """The outbound id of an admin send with this key: the same key names the same message."""
    return f"admin:{phone_number_id}:{idempotency_key}"


def _format_age(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


class _AdminApi:
    """The route handlers, over the injected ports."""

    def __init__(
        self,
        store: AdminStorePort,
        outbox_for: Callable[[str], AdminOutboxPort],
        numbers: tuple[str, ...],
        now: Callable[[], float],
        new_id: Callable[[], str],
        handoff: HandoffControl | None = None,
    ) -> None:
        self.store = store
        self.outbox_for = outbox_for
        self.numbers = numbers
        self.now = now
        self.new_id = new_id
        self.handoff = handoff

    # -- helpers ---------------------------------------------------------------------------

    async def _find_chat(self, key: ChatKey) -> ChatRecord | None:
        """The chat with this user; a user who has a BSUID is keyed by it, so a phone number
        is also looked up among the contacts of that business number."""
        chat = await self.store.get_chat(key)
        if chat is not None or is_bsuid(key.user) or not key.user.isdigit():
            return chat
        for contact in await self.store.search_contacts(key.user, _CONTACT_LOOKUP):
            phone = normalize_user(contact.phone or "")
            if contact.phone_number_id == key.phone_number_id and phone == key.user:
                return await self.store.get_chat(contact.chat)
        return None

    def _chat_from_path(self, raw: str) -> ChatKey:
        number, sep, user = raw.partition(":")
        if not sep:  # a bare user: the default business number
            number, user = self.numbers[0], raw
        user = user.strip()
        try:
            return ChatKey(phone_number_id=number.strip(), user=normalize_user(user) or user)
        except ValidationError:
            raise AdminProblem.invalid(
                ("path", "chat"),
                f"{raw[:64]!r} is not a chat: use 'phone_number_id:user', or a user's phone"
                " number or BSUID for the default number",
                "invalid_chat",
            ) from None

    def _check_window(self, chat: ChatRecord | None, key: ChatKey) -> None:
        now = self.now()
        if chat is not None and window_open(chat.last_inbound_at, now):
            return
        if chat is None or chat.last_inbound_at is None:
            why = f"{key.user} has never written to {key.phone_number_id}"
        else:
            why = f"{key.user} last wrote {_format_age(now - chat.last_inbound_at)} ago"
        raise AdminProblem(
            409,
            "outside_window",
            f"{why}: outside the {WINDOW_SECONDS // 3600}-hour customer service window only"
            " approved templates may be sent; the user must write first",
        )

    async def _dispatch(self, item: OutboundItem, *, fresh: bool = False) -> None:
        """`fresh`: recorded by this call just now, so the outbox sends it without first
        waiting its grace for a status (it cannot have been attempted)."""
        try:
            await self.outbox_for(item.phone_number_id).dispatch([item], [fresh])
        except Exception:
            # Recorded as pending already: the outbox sends it when it resumes (at its start).
            log.exception("admin send %s recorded; dispatch failed", item.outbound_id)

    async def _repeated(
        self, existing: OutboundRecord, key: ChatKey, text: str
    ) -> SendMessageResponse:
        """An idempotency key seen before: the same message again, or a conflict."""
        sent_text = existing.body.get("text")
        same_text = isinstance(sent_text, dict) and sent_text.get("body") == text
        if existing.chat != str(key) or not same_text:
            raise AdminProblem(
                409,
                "idempotency_conflict",
                f"idempotency_key already names another message ({existing.outbound_id}, to"
                f" {existing.to}); use a new key for a new message",
            )
        if existing.status == "pending":  # the first call may have died before dispatching
            await self._dispatch(existing.to_item())
        return SendMessageResponse(
            outbound_id=existing.outbound_id,
            status=existing.status,
            chat=existing.chat,
            to=existing.to,
            phone_number_id=existing.phone_number_id,
            created=False,
        )

    # -- routes ----------------------------------------------------------------------------

    async def send_message(self, request: SendMessageRequest) -> SendMessageResponse:
        loc = ("body", "phone_number_id")
        given = served_number(self.numbers, request.phone_number_id, loc, verb="sends from")
        number = self.numbers[0] if given is None else given
        chat = await self._find_chat(ChatKey(phone_number_id=number, user=request.to))
        key = (
            ChatKey.parse(chat.chat)
            if chat is not None
            else ChatKey(phone_number_id=number, user=request.to)
        )
        try:
            body = TextMessage(to=key.user, body=request.text).to_graph_body()
        except MessageValidationError as exc:
            detail = str(exc.details or exc)
            raise AdminProblem.invalid(("body", "to"), detail, "invalid_message") from None
        if request.idempotency_key is not None:
            outbound_id = idempotent_outbound_id(number, request.idempotency_key)
            existing = await self.store.get_outbound(outbound_id)
            if existing is not None:
                return await self._repeated(existing, key, request.text)
        else:
            outbound_id = self.new_id()
        self._check_window(chat, key)
        item = OutboundItem(
            outbound_id=outbound_id,
            chat=str(key),
            phone_number_id=number,
            to=key.user,
            body=body,
            created_at=self.now(),
        )
        if not await self.store.record_outbound(item):  # a concurrent call with this key won
            existing = await self.store.get_outbound(outbound_id)
            if existing is None:  # pragma: no cover (recorded, so it is there)
                raise RuntimeError(f"outbound {outbound_id} vanished")
            return await self._repeated(existing, key, request.text)
        await self._dispatch(item, fresh=True)
        return SendMessageResponse(
            outbound_id=outbound_id,
            status="pending",
            chat=str(key),
            to=key.user,
            phone_number_id=number,
            created=True,
        )

    async def get_messages(
        self,
        chat: Annotated[
            str,
            Path(
                min_length=1,
                max_length=300,
                description="`phone_number_id:user` (URL-encoded), or a user's phone number"
                " or BSUID on the default number.",
            ),
        ],
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        before: Annotated[
            int | None,
            Query(ge=1, le=MAX_SEQ, description="A `next_before` from the previous page."),
        ] = None,
    ) -> MessagesPage:
        key = self._chat_from_path(chat)
        record = await self._find_chat(key)
        chat_id = record.chat if record is not None else str(key)
        rows = await self.store.get_messages(chat_id, limit + 1, before)  # one more: more?
        if record is None and not rows and not await self.store.get_messages(chat_id, 1):
            raise AdminProblem(404, "not_found", f"no chat {chat_id!r}")
        more = len(rows) > limit
        page = rows[1:] if more else rows  # oldest first: the extra one is the oldest
        return MessagesPage(
            chat=chat_id,
            messages=[MessageOut.from_record(row) for row in page],
            next_before=page[0].seq if more else None,
        )

    async def _set_handoff(self, chat: str, on: bool) -> ChatOut:
        key = self._chat_from_path(chat)
        record = await self._find_chat(key)
        if record is None:
            raise AdminProblem(404, "not_found", f"no chat {str(key)!r}")
        if record.phone_number_id not in self.numbers:
            raise AdminProblem(
                409,
                "number_not_configured",
                f"chat {record.chat!r} is on business number {record.phone_number_id}, which"
                " this app does not serve",
            )
        assert self.handoff is not None  # the routes exist only with a handoff control
        await self.handoff(record.chat, on)
        updated = await self.store.get_chat(record.chat)
        return ChatOut.from_record(updated or record, self.now())

    async def start_handoff(
        self, chat: Annotated[str, Path(min_length=1, max_length=300)]
    ) -> ChatOut:
        return await self._set_handoff(chat, True)

    async def release_handoff(
        self, chat: Annotated[str, Path(min_length=1, max_length=300)]
    ) -> ChatOut:
        return await self._set_handoff(chat, False)

    async def list_handoffs(
        self,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        phone_number_id: NumberFilter = None,
    ) -> HandoffChatsOut:
        number = served_number(self.numbers, phone_number_id, ("query", "phone_number_id"))
        rows = await self.store.handoff_chats(number, limit=limit)
        now = self.now()
        return HandoffChatsOut(chats=[ChatOut.from_record(row, now) for row in rows])

    async def list_chats(
        self,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        phone_number_id: NumberFilter = None,
    ) -> ChatsPage:
        number = served_number(self.numbers, phone_number_id, ("query", "phone_number_id"))
        rows = await self.store.list_chats(limit + 1, offset, phone_number_id=number)
        now = self.now()
        return ChatsPage(
            chats=[ChatOut.from_record(row, now) for row in rows[:limit]],
            limit=limit,
            offset=offset,
            next_offset=offset + limit if len(rows) > limit else None,
        )

    async def search_contacts(
        self,
        q: Annotated[
            str,
            Query(
                min_length=1,
                max_length=100,
                description="Part of a name, phone number (any format), BSUID or chat key.",
            ),
        ],
        limit: Annotated[int, Query(ge=1, le=CONTACT_PAGE)] = 20,
        phone_number_id: NumberFilter = None,
    ) -> ContactsPage:
        if not q.strip():
            raise AdminProblem.invalid(("query", "q"), "must not be only spaces", "blank_query")
        number = served_number(self.numbers, phone_number_id, ("query", "phone_number_id"))
        rows = await self.store.search_contacts(q, limit, phone_number_id=number)
        return ContactsPage(q=q, contacts=[ContactOut.from_record(row) for row in rows])

    async def list_dead_letters(
        self,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        include_replayed: Annotated[
            bool, Query(description="Also list dead letters already replayed.")
        ] = False,
        phone_number_id: NumberFilter = None,
    ) -> DeadLettersPage:
        number = served_number(self.numbers, phone_number_id, ("query", "phone_number_id"))
        fetched = await self.store.list_dead_letters(
            limit + 1, include_replayed, offset, phone_number_id=number
        )
        letters = fetched[:limit]
        messages = await asyncio.gather(
            *(self.store.get_outbound(letter.outbound_id) for letter in letters)
        )
        return DeadLettersPage(
            dead_letters=[
                DeadLetterOut.from_record(letter, message)
                for letter, message in zip(letters, messages, strict=True)
            ],
            limit=limit,
            offset=offset,
            next_offset=offset + limit if len(fetched) > limit else None,
        )

    async def replay_dead_letter(
        self, dead_letter_id: Annotated[str, Path(min_length=1, max_length=200)]
    ) -> OutboundOut:
        letter = await self.store.get_dead_letter(dead_letter_id)
        if letter is None:
            raise AdminProblem(404, "not_found", f"no dead letter {dead_letter_id!r}")
        original = await self.store.get_outbound(letter.outbound_id)
        if original is None:
            raise AdminProblem(
                404, "not_found", f"dead letter {dead_letter_id!r}: its message is gone"
            )
        if original.phone_number_id not in self.numbers:
            raise AdminProblem(
                409,
                "number_not_configured",
                f"dead letter {dead_letter_id!r} is for business number"
                f" {original.phone_number_id}, which this app does not send from",
            )
        try:
            record = await self.outbox_for(original.phone_number_id).replay_dead_letter(
                dead_letter_id
            )
        except KeyError as exc:
            raise AdminProblem(404, "not_found", str(exc).strip("'\"")) from None
        return OutboundOut.from_record(record)


def create_admin_router(
    *,
    admin_token: str,
    store: AdminStorePort,
    outbox_for: Callable[[str], AdminOutboxPort],
    phone_number_ids: Sequence[str],
    inference: InferenceReport | None = None,
    handoff: HandoffControl | None = None,
    status: StatusReport | None = None,
    inbox: AdminInboxPort | None = None,
    now: Callable[[], float] = time.time,
    new_id: Callable[[], str] = _new_outbound_id,
) -> APIRouter:
    """The admin API under `/api`, guarded by `admin_token` (Bearer).

    `outbox_for(phone_number_id)` gives that number's outbox; `phone_number_ids` are the numbers
    this app sends from (the first is the default). `inference` reports the agents' inference
    load (`GET /api/inference`; absent without it). `handoff(chat, on)` sets a chat's handoff
    flag where its live session sees it (`POST /api/chats/{chat}/handoff` and `.../release`,
    `GET /api/handoffs`; absent without it). `status()` takes a snapshot of the running
    platform (`GET /api/status`; absent without it). `inbox` is the inbox the ingress appends
    to (`GET /api/inbound/unresolved` and `POST /api/quarantine/{id}/replay`; absent without it;
    the quarantine's listings are always there). `now` is the clock of the 24-hour window check;
    `new_id` names sends made without an idempotency key.
    """
    numbers = tuple(phone_number_ids)
    if not numbers:
        raise ValueError("the admin API needs at least one phone_number_id to send from")
    api = _AdminApi(store, outbox_for, numbers, now, new_id, handoff)
    router = APIRouter(
        prefix="/api",
        tags=["admin"],
        route_class=guarded_route_class(BearerAuth(admin_token)),
        dependencies=[Security(_BEARER_SCHEME)],
        responses=_ERROR_RESPONSES,
    )
    conflict: dict[int | str, dict[str, Any]] = {
        409: {"model": ErrorBody, "description": "Refused; `message` says why."}
    }
    not_found: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorBody, "description": "Unknown id."}
    }
    router.add_api_route(
        "/send-message",
        api.send_message,
        methods=["POST"],
        status_code=202,
        operation_id="send_message",
        summary="Send a text message to a user",
        description=(
            "Records the message, hands it to the outbox and answers at once (202). Refused"
            " with 409 outside the user's 24-hour window (the user must write first) and when"
            " an idempotency key is reused for a different message. The same key again"
            " answers with the first call's message and sends nothing more."
        ),
        responses=conflict,
    )
    router.add_api_route(
        "/messages/{chat}",
        api.get_messages,
        methods=["GET"],
        operation_id="get_messages",
        summary="A chat's messages, oldest first, a page at a time",
        responses=not_found,
    )
    router.add_api_route(
        "/chats",
        api.list_chats,
        methods=["GET"],
        operation_id="list_chats",
        summary="Chats, most recently active first",
    )
    router.add_api_route(
        "/contacts/search",
        api.search_contacts,
        methods=["GET"],
        operation_id="search_contacts",
        summary="Find contacts by name, phone number or BSUID",
    )
    router.add_api_route(
        "/dead-letters",
        api.list_dead_letters,
        methods=["GET"],
        operation_id="list_dead_letters",
        summary="Messages the outbox gave up on, newest first",
    )
    router.add_api_route(
        "/dead-letters/{dead_letter_id}/replay",
        api.replay_dead_letter,
        methods=["POST"],
        status_code=202,
        operation_id="replay_dead_letter",
        summary="Send a dead letter's message again",
        description=(
            "Sends a copy under an id derived from the dead letter, so replaying twice sends"
            " once; answers with the copy's outbound record once its send has settled (a copy"
            " that fails again gets a dead letter of its own)."
        ),
        responses={**not_found, **conflict},
    )
    add_account_routes(
        router, store=store, numbers=numbers, now=now, inbox=inbox, not_found=not_found
    )
    add_analytics_routes(router, admin_token=admin_token, store=store, numbers=numbers, now=now)
    add_turns_routes(router, store=store, numbers=numbers, not_found=not_found)
    if handoff is not None:
        chat_routes: dict[int | str, dict[str, Any]] = {
            **not_found,
            409: {"model": ErrorBody, "description": "A chat on a number this app does not serve."},
        }
        router.add_api_route(
            "/chats/{chat}/handoff",
            api.start_handoff,
            methods=["POST"],
            operation_id="start_handoff",
            summary="Hand a chat to a person: the bot stops answering it",
            description=(
                "Sets the chat's handoff flag, seen at once by its live session: its messages"
                " are stored and forwarded to the operator number instead of answered. Send"
                " replies with `POST /api/send-message` (or from the operator's phone, see"
                " docs/handoff.md). Idempotent; answers with the chat."
            ),
            responses=chat_routes,
        )
        router.add_api_route(
            "/chats/{chat}/release",
            api.release_handoff,
            methods=["POST"],
            operation_id="release_handoff",
            summary="Give a handed-off chat back to the bot",
            description="Clears the chat's handoff flag (idempotent); answers with the chat.",
            responses=chat_routes,
        )
        router.add_api_route(
            "/handoffs",
            api.list_handoffs,
            methods=["GET"],
            operation_id="list_handoffs",
            summary="Chats handed to a person, most recently active first",
        )
    if inference is not None:
        report = inference

        async def inference_load() -> InferenceOut:
            return InferenceOut.model_validate(await report())

        router.add_api_route(
            "/inference",
            inference_load,
            methods=["GET"],
            operation_id="inference_load",
            summary="How loaded inference is, per agent (backpressure)",
        )
    if status is not None:
        snapshot = status

        async def platform_status(phone_number_id: NumberFilter = None) -> StatusOut:
            number = served_number(numbers, phone_number_id, ("query", "phone_number_id"))
            taken = await snapshot()
            if number is None:
                return taken
            mine = [o for o in taken.outboxes if o.phone_number_id == number]
            return taken.model_copy(update={"outboxes": mine})

        router.add_api_route(
            "/status",
            platform_status,
            methods=["GET"],
            operation_id="platform_status",
            summary="One snapshot of the running platform (what `whatsray status` shows)",
            description=(
                "Partitions' backlog and sessions, agents' load, outboxes' queues and rate"
                " limits, dead letters, handoffs and the next scheduled runs. Every part is asked"
                " at once with a timeout: one that does not answer is null and named in"
                " `unavailable`, and the rest still comes back."
            ),
        )
    return router
