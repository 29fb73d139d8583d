"""`POST /{phone_number_id}/messages`: validate, enforce Meta's limits, accept, schedule statuses.

The checks run in the order Meta's behaviour implies: the body (shared validator), injected
faults, throughput, templates, the 24 h window, then the pair rate. A refused send costs no pair
token, so retrying after 131047 or 132001 does not eat a user's burst.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from whatsray.whatsapp.emulator.clock import Clock
from whatsray.whatsapp.emulator.config import BusinessNumber, EmulatorConfig
from whatsray.whatsapp.emulator.delivery import StatusItem, WebhookDelivery
from whatsray.whatsapp.emulator.faults import Faults
from whatsray.whatsapp.emulator.meta_errors import GraphResult, graph_error, status_error
from whatsray.whatsapp.emulator.rate_limits import SendLimits
from whatsray.whatsapp.emulator.state import EmulatorState, OutboundRecord, user_key
from whatsray.whatsapp.emulator.webhook_payloads import (
    new_wamid,
    pricing_for,
    status_entry,
)
from whatsray.whatsapp.errors import MessageValidationError
from whatsray.whatsapp.messages import (
    ListMessage,
    MarkAsRead,
    Message,
    ReplyButtonsMessage,
    TemplateMessage,
    is_bsuid,
    validate_send_body,
)

log = logging.getLogger("whatsray.emulator")

_CALLS_FOR_REPLY = (ReplyButtonsMessage, ListMessage, TemplateMessage)


class MessageSender:
    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        state: EmulatorState,
        faults: Faults,
        delivery: WebhookDelivery,
        webhook_url: Callable[[], str | None],
    ) -> None:
        self._config = config
        self._clock = clock
        self._state = state
        self._faults = faults
        self._delivery = delivery
        self._webhook_url = webhook_url
        self.limits = SendLimits(
            clock.now,
            throughput_mps=config.throughput_of,
            pair_burst=config.pair_burst,
            pair_refill_seconds=config.pair_refill_seconds,
        )

    def handle(self, phone_number_id: str, body: Any) -> GraphResult:
        number = self._config.number(phone_number_id)
        if number is None:
            return self._reject(
                phone_number_id,
                body,
                graph_error(
                    100,
                    f"Unsupported post request. Object with ID '{phone_number_id}' does not "
                    "exist, cannot be loaded due to missing permissions, or does not support "
                    "this operation.",
                ),
            )
        if not isinstance(body, dict):
            return self._reject(
                number.id, body, graph_error(100, "The request body must be a JSON object.")
            )
        try:
            parsed = validate_send_body(body)
        except MessageValidationError as exc:
            return self._reject(
                number.id, body, graph_error(exc.code or 100, exc.details or exc.message)
            )
        if isinstance(parsed, MarkAsRead):
            return self._mark_read(number, body, parsed)
        return self._send(number, body, parsed)

    # --- message sends -----------------------------------------------------------------------

    def _send(self, number: BusinessNumber, body: dict[str, Any], message: Message) -> GraphResult:
        user = user_key(message.to)
        if user == number.display_phone_number:
            return self._reject(number.id, body, graph_error(131021), to=message.to)
        fault = self._faults.take_send_error(user)
        if fault is not None and fault.mode == "sync":
            error = graph_error(fault.code, fault.details, http_status=fault.http_status)
            return self._reject(number.id, body, error, to=message.to)
        if not self.limits.take_throughput(number.id):
            return self._reject(number.id, body, graph_error(130429), to=message.to)
        is_template = isinstance(message, TemplateMessage)
        if isinstance(message, TemplateMessage):
            known = self._config.known_templates
            if known and message.name not in known:
                details = f"template name ({message.name}) does not exist in {message.language}"
                return self._reject(number.id, body, graph_error(132001, details), to=message.to)
        async_error: tuple[int, str | None] | None = None
        if not is_template and not self._window_open(number.id, user):
            if self._config.window_failure_mode == "sync":
                return self._reject(number.id, body, graph_error(131047), to=message.to)
            async_error = (131047, None)
        if not self.limits.take_pair(number.id, user):
            return self._reject(number.id, body, graph_error(131056), to=message.to)
        if fault is not None:  # an async fault: accepted now, `failed` later
            async_error = (fault.code, fault.details)

        wamid = new_wamid(user)
        statuses = self._schedule_statuses(number, wamid, message, is_template, async_error)
        if isinstance(message, _CALLS_FOR_REPLY):
            self._state.last_interactive[(number.id, user)] = wamid
        contact = (
            {"input": message.to, "user_id": message.to}
            if is_bsuid(message.to)
            else {"input": message.to, "wa_id": user}
        )
        sent: dict[str, Any] = {"id": wamid}
        if is_template:
            sent["message_status"] = "accepted"  # template pacing: accepted, not yet sent
        result = GraphResult(
            200, {"messaging_product": "whatsapp", "contacts": [contact], "messages": [sent]}
        )
        self._record(
            "message", number.id, body, result, to=message.to, wamid=wamid, statuses=statuses
        )
        return result

    def _window_open(self, phone_number_id: str, user: str) -> bool:
        if not self._config.window_enforcement:
            return True
        return self._state.windows.is_open(
            phone_number_id, user, now=self._clock.now(), length=self._config.window_seconds
        )

    def _schedule_statuses(
        self,
        number: BusinessNumber,
        wamid: str,
        message: Message,
        is_template: bool,
        async_error: tuple[int, str | None] | None,
    ) -> list[str]:
        delays = self._config.status_delays
        if async_error is not None:
            plan = [("failed", delays.sent or 0.0)]
        else:
            steps = (("sent", delays.sent), ("delivered", delays.delivered), ("read", delays.read))
            plan = [(status, delay) for status, delay in steps if delay is not None]
        if self._webhook_url() is None:
            log.info("status   %s: no webhook_url configured, statuses not delivered", wamid)
            return [status for status, _ in plan]
        # Out of order: the statuses keep their logical timestamps but arrive in reverse.
        arrival = [delay for _, delay in plan]
        if len(plan) > 1 and self._draw(self._config.out_of_order_probability):
            arrival.reverse()
        now = self._clock.now()
        bsuid = is_bsuid(message.to)
        for (status, delay), arrives_after in zip(plan, arrival, strict=True):
            entry = status_entry(
                wamid=wamid,
                status=status,
                timestamp=int(now + delay),
                recipient_id=None if bsuid else user_key(message.to),
                recipient_user_id=message.to if bsuid else None,
                callback_data=message.callback_data,
                pricing=pricing_for(is_template) if status in ("sent", "delivered") else None,
                errors=[status_error(*async_error)] if async_error is not None else None,
            )
            label = f"{status:<9} {wamid[:24]}... to {message.to}"
            item = StatusItem(number, entry)
            if self._faults.statuses is not None:  # duplicated and shuffled on demand
                for copy_after in self._faults.status_arrivals(arrives_after):
                    self._delivery.schedule_status(item, label, delay=copy_after)
                continue
            copies = 2 if self._draw(self._config.duplicate_probability) else 1
            self._delivery.schedule_status(item, label, delay=arrives_after, copies=copies)
        return [status for status, _ in plan]

    def _draw(self, probability: float) -> bool:
        return probability > 0 and self._faults.draw() < probability

    # --- mark as read ------------------------------------------------------------------------

    def _mark_read(
        self, number: BusinessNumber, body: dict[str, Any], read: MarkAsRead
    ) -> GraphResult:
        fault = self._faults.take_read_error()
        if fault is not None:
            error = graph_error(fault.code, fault.details, http_status=fault.http_status)
            return self._reject(number.id, body, error, kind="read")
        if self._state.inbound_ids.get(read.message_id) != number.id:
            details = f"Message ID {read.message_id} is not a message received by this number."
            return self._reject(number.id, body, graph_error(131009, details), kind="read")
        result = GraphResult(200, {"success": True})
        self._record("read", number.id, body, result, wamid=read.message_id)
        return result

    # --- records -----------------------------------------------------------------------------

    def _reject(
        self,
        phone_number_id: str,
        body: Any,
        result: GraphResult,
        *,
        to: str | None = None,
        kind: str | None = None,
    ) -> GraphResult:
        if kind is None:
            kind = "read" if isinstance(body, dict) and body.get("status") == "read" else "message"
        if to is None and isinstance(body, dict):
            raw_to = body.get("to", body.get("recipient"))
            to = raw_to if isinstance(raw_to, str) else None
        self._record(kind, phone_number_id, body, result, to=to)
        return result

    def _record(
        self,
        kind: str,
        phone_number_id: str,
        body: Any,
        result: GraphResult,
        *,
        to: str | None = None,
        wamid: str | None = None,
        statuses: list[str] | None = None,
    ) -> None:
        error = result.body.get("error") if result.status != 200 else None
        record = OutboundRecord(
            seq=self._state.next_seq(),
            time=self._clock.now(),
            kind=kind,
            phone_number_id=phone_number_id,
            to=to,
            recipient=user_key(to) if to else None,
            body=body,
            wamid=wamid,
            outcome="accepted" if result.status == 200 else "rejected",
            http_status=result.status,
            error_code=result.error_code,
            error_details=error["error_data"]["details"] if error else None,
            statuses=statuses or [],
        )
        self._state.outbound.append(record)
        if log.isEnabledFor(logging.INFO):  # building the line costs more than the check
            log.info("%s", _console_line(record))


def _console_line(record: OutboundRecord) -> str:
    body = record.body if isinstance(record.body, dict) else {}
    kind = body.get("type", "read" if record.kind == "read" else "?")
    found = body.get(kind)
    content: dict[str, Any] = found if isinstance(found, dict) else {}
    preview = content.get("body") or content.get("name") or content.get("caption") or ""
    if isinstance(preview, str) and len(preview) > 60:
        preview = preview[:57] + "..."
    target = record.to or body.get("message_id") or "?"
    if record.outcome != "accepted":
        outcome = f"{record.http_status} ({record.error_code}) {record.error_details}"
    else:
        outcome = f"200 {record.wamid}" if record.kind == "message" else "200"
    text = f" {preview!r}" if preview else ""
    return f"send     {record.phone_number_id} -> {target} {kind}{text} => {outcome}"
