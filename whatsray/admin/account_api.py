"""The admin API's inbound account: unresolved inbound items, and the quarantine (its listing,
one record, and replaying one into the inbox). See docs/admin-api.md, "The inbound account".

`add_account_routes(...)` adds these routes to the admin router (`whatsray.admin.api`), which
guards them as it guards every route; they talk to the store and the inbox through the ports in
`whatsray.admin.ports`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import TypeAdapter, ValidationError

from whatsray.admin.guard import AdminProblem
from whatsray.admin.models import (
    ErrorBody,
    QuarantineOut,
    QuarantinePage,
    UnresolvedOut,
    UnresolvedPage,
)
from whatsray.admin.paging import MAX_OFFSET, MAX_PAGE
from whatsray.admin.ports import AdminInboxPort, AdminStorePort
from whatsray.inbox.values import InboxUnavailable
from whatsray.whatsapp.events import Event

__all__ = ["add_account_routes"]

MAX_UNRESOLVED = 1000
MAX_OLDER_THAN_S = 366 * 24 * 3600
# A quarantine record's events, read as the inbox reads an entry (JSON mode).
_EVENT_LIST: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


class _AccountApi:
    """The inbound account's route handlers, over the injected ports."""

    def __init__(
        self,
        store: AdminStorePort,
        numbers: tuple[str, ...],
        now: Callable[[], float],
        inbox: AdminInboxPort | None,
    ) -> None:
        self.store = store
        self.numbers = numbers
        self.now = now
        self.inbox = inbox

    async def list_unresolved(
        self,
        older_than_s: Annotated[
            int,
            Query(
                ge=0,
                le=MAX_OLDER_THAN_S,
                description="Only items without an outcome for at least this many seconds.",
            ),
        ] = 60,
        limit: Annotated[
            int,
            Query(ge=1, le=MAX_UNRESOLVED, description="At most this many items, oldest first."),
        ] = 100,
    ) -> UnresolvedPage:
        assert self.inbox is not None  # the route exists only with an inbox
        inbox = self.inbox
        try:
            per_partition = await asyncio.gather(
                *(inbox.unresolved(p, older_than_s, limit) for p in range(inbox.partitions))
            )
        except InboxUnavailable as exc:
            raise _inbox_unavailable(exc, "nothing can be listed") from None
        stored = await self.store.unresolved_messages(older_than_s, limit)
        now = self.now()
        items = [UnresolvedOut.from_entry(entry) for found in per_partition for entry in found]
        items += [UnresolvedOut.from_message(message, now) for message in stored]
        items.sort(key=lambda item: item.age_s, reverse=True)
        full = len(stored) >= limit or any(len(found) >= limit for found in per_partition)
        return UnresolvedPage(
            older_than_s=older_than_s,
            count=min(len(items), limit),
            truncated=full or len(items) > limit,
            items=items[:limit],
        )

    async def list_quarantine(
        self,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        include_replayed: Annotated[
            bool, Query(description="Also list records already replayed.")
        ] = False,
    ) -> QuarantinePage:
        fetched = await self.store.list_quarantined(limit + 1, include_replayed, offset)
        return QuarantinePage(
            quarantined=[QuarantineOut.from_record(record) for record in fetched[:limit]],
            limit=limit,
            offset=offset,
            next_offset=offset + limit if len(fetched) > limit else None,
        )

    async def get_quarantine(
        self, quarantine_id: Annotated[str, Path(min_length=1, max_length=200)]
    ) -> QuarantineOut:
        record = await self.store.get_quarantined(quarantine_id)
        if record is None:
            raise AdminProblem(404, "not_found", f"no quarantine record {quarantine_id!r}")
        return QuarantineOut.from_record(record)

    async def replay_quarantine(
        self, quarantine_id: Annotated[str, Path(min_length=1, max_length=200)]
    ) -> QuarantineOut:
        assert self.inbox is not None  # the route exists only with an inbox
        record = await self.store.get_quarantined(quarantine_id)
        if record is None:
            raise AdminProblem(404, "not_found", f"no quarantine record {quarantine_id!r}")
        if record.replayed_at is not None:
            raise _already_replayed(quarantine_id)
        if record.reason == "poison":
            raise AdminProblem(
                409,
                "not_replayable",
                f"quarantine record {quarantine_id!r} is poison: it holds the raw fields of an"
                " inbox entry that does not decode, not events, so there is nothing to replay",
            )
        try:
            events = _EVENT_LIST.validate_json(record.events)
        except ValidationError as exc:
            raise AdminProblem(
                409,
                "not_replayable",
                f"quarantine record {quarantine_id!r}: its events do not decode"
                f" ({exc.error_count()} error(s), first: {exc.errors()[0]['msg']})",
            ) from None
        unserved = sorted(
            {e.chat.phone_number_id for e in events if e.chat is not None} - set(self.numbers)
        )
        if unserved or not events:
            raise AdminProblem(
                409,
                "number_not_configured" if unserved else "not_replayable",
                f"quarantine record {quarantine_id!r} is for business number(s)"
                f" {', '.join(unserved)}, which this app does not serve: add them to"
                " WHATSRAY_PHONE_NUMBER_IDS first"
                if unserved
                else f"quarantine record {quarantine_id!r} holds no events",
            )
        if not await self.store.claim_quarantine_replay(quarantine_id):
            raise _already_replayed(quarantine_id)  # a concurrent replay won
        try:
            await self.inbox.append_replay(events)
        except BaseException as exc:
            # Not appended: the record goes back as it was, so that a later replay can go.
            await self.store.undo_quarantine_replay(quarantine_id)
            if isinstance(exc, InboxUnavailable):
                raise _inbox_unavailable(exc, "nothing was replayed; try again") from None
            raise
        replayed = await self.store.get_quarantined(quarantine_id)
        return QuarantineOut.from_record(replayed or record)


def _already_replayed(quarantine_id: str) -> AdminProblem:
    return AdminProblem(
        409,
        "already_replayed",
        f"quarantine record {quarantine_id!r} was replayed already: its events went back into"
        " the inbox once (if they fail again, a record is quarantined again)",
    )


def _inbox_unavailable(exc: InboxUnavailable, consequence: str) -> AdminProblem:
    return AdminProblem(
        503,
        "inbox_unavailable",
        f"the inbox (Redis) is unavailable ({exc}); {consequence}",
        headers={"Retry-After": "5"},
    )


def add_account_routes(
    router: APIRouter,
    *,
    store: AdminStorePort,
    numbers: tuple[str, ...],
    now: Callable[[], float],
    inbox: AdminInboxPort | None,
    not_found: dict[int | str, dict[str, Any]],
) -> None:
    """Add the quarantine's listings to `router`, and with an `inbox` the inbound account
    (`GET /api/inbound/unresolved`) and quarantine replays (`POST /api/quarantine/{id}/replay`).
    `numbers` are the business numbers the app serves (a replay for another is refused)."""
    api = _AccountApi(store, numbers, now, inbox)
    router.add_api_route(
        "/quarantine",
        api.list_quarantine,
        methods=["GET"],
        operation_id="list_quarantine",
        summary="Inbound items the pipeline gave up on, newest first",
        description=(
            "Each record holds its reason (permanent, deadline, not_served, poison), the step"
            " that failed, the error, and the events as the inbox held them; its inbound"
            " messages have the outcome `quarantined` (or `not_served`). Replayed records only"
            " with `include_replayed=true`."
        ),
    )
    router.add_api_route(
        "/quarantine/{quarantine_id}",
        api.get_quarantine,
        methods=["GET"],
        operation_id="get_quarantine",
        summary="One quarantine record, with its events",
        responses=not_found,
    )
    if inbox is not None:
        router.add_api_route(
            "/inbound/unresolved",
            api.list_unresolved,
            methods=["GET"],
            operation_id="list_unresolved_inbound",
            summary="Inbound items without an outcome for longer than `older_than_s`, oldest first",
            description=(
                "Inbox entries delivered to a session host and never acked (`pending`), or not"
                " read yet (`undelivered`), in every partition; and stored inbound messages"
                " whose outcome is unset (`no_outcome`). A healthy platform lists nothing"
                " older than a minute. 503 when the inbox is unavailable."
            ),
            responses={503: {"model": ErrorBody, "description": "The inbox is unavailable."}},
        )
        router.add_api_route(
            "/quarantine/{quarantine_id}/replay",
            api.replay_quarantine,
            methods=["POST"],
            status_code=202,
            operation_id="replay_quarantine",
            summary="Put a quarantine record's events back into the inbox",
            description=(
                "Marks the record replayed, clears its messages' outcome and appends its events"
                " to their partitions again (past the dedupe check); the session hosts then"
                " handle them like new ones. Once only: replaying again is 409, as is a poison"
                " record (nothing to replay). 503 when the inbox cannot take them: the record"
                " stays as it was. Answers with the record (`replayed_at` set)."
            ),
            responses={
                **not_found,
                409: {
                    "model": ErrorBody,
                    "description": "Replayed already, poison, or for a number not served.",
                },
                503: {"model": ErrorBody, "description": "The inbox is unavailable."},
            },
        )
