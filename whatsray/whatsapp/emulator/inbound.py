"""`POST /emulator/inbound`: act as a WhatsApp user writing to a business number.

The message opens (or refreshes) the user's 24 h window the moment it is "sent", as on WhatsApp,
whether or not the webhook gets through. The first delivery attempt runs in the request, so the
answer says what the webhook endpoint replied; failed attempts are retried in the background
(or in the request, with `"wait": true`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from whatsray.whatsapp.emulator.clock import Clock
from whatsray.whatsapp.emulator.config import EmulatorConfig
from whatsray.whatsapp.emulator.delivery import WebhookDelivery
from whatsray.whatsapp.emulator.inbound_messages import to_meta_message
from whatsray.whatsapp.emulator.state import EmulatorState, user_key
from whatsray.whatsapp.emulator.webhook_payloads import (
    build_inbound_payload,
    encode_webhook_body,
    new_wamid,
)

log = logging.getLogger("whatsray.emulator")


class InboundRequest(BaseModel):
    """The body of `POST /emulator/inbound`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    from_: str | None = Field(default=None, alias="from")
    user_id: str | None = None
    phone_number_id: str | None = None
    message: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=100)
    profile_name: str | None = None
    duplicates: int = Field(default=0, ge=0, le=20)
    wait: bool = False

    @model_validator(mode="after")
    def _check(self) -> InboundRequest:
        if (self.message is None) == (self.messages is None):
            raise ValueError("give exactly one of 'message' and 'messages'")
        if not self.from_ and not self.user_id:
            raise ValueError("give 'from' (the user's phone number) or 'user_id' (a BSUID)")
        if self.from_ and not user_key(self.from_).isdigit():
            raise ValueError("'from' must be a phone number (digits, optional + and spaces)")
        return self

    @property
    def all_messages(self) -> list[dict[str, Any]]:
        return [self.message] if self.message is not None else list(self.messages or [])


class InboundError(Exception):
    """A request the emulator cannot act on; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class InboundService:
    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        state: EmulatorState,
        delivery: WebhookDelivery,
        webhook_url: Callable[[], str | None],
    ) -> None:
        self._config = config
        self._clock = clock
        self._state = state
        self._delivery = delivery
        self._webhook_url = webhook_url

    async def receive(self, request: InboundRequest) -> tuple[int, dict[str, Any]]:
        """Build, record and deliver the webhook. Raises `InboundError` (or a ValueError from
        the message description) before anything is recorded."""
        pnid = request.phone_number_id or self._config.phone_numbers[0].id
        number = self._config.number(pnid)
        if number is None:
            raise InboundError(400, f"unknown phone_number_id {pnid!r}")
        if self._webhook_url() is None:
            raise InboundError(409, "no webhook_url configured: PUT /emulator/webhook-url first")
        wa_id = user_key(request.from_) if request.from_ else None
        user = wa_id or str(request.user_id)
        now = self._clock.now()
        messages = []
        for description in request.all_messages:
            meta = to_meta_message(
                description,
                media=self._state.media.get,
                business_number=number.display_phone_number,
                last_interactive_wamid=self._state.last_interactive.get((number.id, user)),
            )
            sender: dict[str, Any] = {"from": wa_id} if wa_id else {}
            if request.user_id:
                sender["from_user_id"] = request.user_id
            messages.append({**sender, "id": new_wamid(user), "timestamp": str(int(now)), **meta})
        payload = build_inbound_payload(
            number,
            wa_id=wa_id,
            user_id=request.user_id,
            profile_name=request.profile_name,
            messages=messages,
        )
        for key in (wa_id, request.user_id):
            if key:
                self._state.windows.touch(number.id, key, now)
        for message in messages:
            self._state.inbound_ids[message["id"]] = number.id
        wamids = [message["id"] for message in messages]
        if log.isEnabledFor(logging.INFO):  # building the line costs more than the check
            log.info("%s", _console_line(user, number.id, messages))

        body = encode_webhook_body(payload)
        label = f"{'+'.join(m['type'] for m in messages)} {wamids[0][:24]}... from {user}"
        attempts = []
        for _ in range(1 + request.duplicates):
            job = self._delivery.new_job("inbound", label, body)
            job.events = len(messages)
            record = await self._delivery.deliver_now(job, wait=request.wait)
            attempts.append((job.attempts, record))
        job_attempts, first = attempts[0]
        delivered = all(record.delivered for _, record in attempts)
        answer = {
            "wamid": wamids[0],
            "wamids": wamids,
            "delivery": {
                "status_code": first.status_code,
                "attempts": job_attempts,
                "delivered": first.delivered,
                "retrying": not first.delivered and not first.gave_up,
                "error": first.error,
            },
            "copies": len(attempts),
            "payload": payload,
        }
        return (200 if delivered else 502), answer


def _console_line(user: str, phone_number_id: str, messages: list[dict[str, Any]]) -> str:
    parts = []
    for message in messages:
        kind = message["type"]
        content = message.get(kind)
        preview = content.get("body") or content.get("emoji") if isinstance(content, dict) else None
        if kind == "interactive" and isinstance(content, dict):
            reply = content.get(content.get("type", ""), {})
            preview = reply.get("title") if isinstance(reply, dict) else None
        parts.append(f"{kind} {preview!r}" if preview else kind)
    return f"inbound  {user} -> {phone_number_id} {', '.join(parts)}"
