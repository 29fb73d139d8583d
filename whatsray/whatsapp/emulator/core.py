"""`Emulator`: the state and behaviour of Meta's side, independent of HTTP routing.

It is built from a config, a clock (default: wall time that the control API can push forward)
and an optional `httpx.AsyncClient` for webhook delivery (injected in tests: an ASGITransport
client to an in-process receiver). `start()`/`stop()` run the delivery worker and close the
client the emulator created itself; it is also an async context manager.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import httpx

from whatsray.whatsapp.emulator.clock import AdvanceableClock, Clock, SystemClock
from whatsray.whatsapp.emulator.config import EmulatorConfig
from whatsray.whatsapp.emulator.delivery import WebhookDelivery
from whatsray.whatsapp.emulator.faults import Faults
from whatsray.whatsapp.emulator.inbound import InboundRequest, InboundService
from whatsray.whatsapp.emulator.media import MediaService
from whatsray.whatsapp.emulator.meta_errors import GraphResult
from whatsray.whatsapp.emulator.sending import MessageSender
from whatsray.whatsapp.emulator.state import (
    EmulatorState,
    OutboundRecord,
    RequestRecord,
    WebhookAttempt,
    user_key,
)

log = logging.getLogger("whatsray.emulator")


class Emulator:
    def __init__(
        self,
        config: EmulatorConfig,
        *,
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.state = EmulatorState(config.max_log_entries)
        self.faults = Faults(config.seed)
        self._webhook_url = config.webhook_url
        self.delivery = WebhookDelivery(
            config, self.clock, self.state, http=http, webhook_url=lambda: self._webhook_url
        )
        self.sender = MessageSender(
            config, self.clock, self.state, self.faults, self.delivery, lambda: self._webhook_url
        )
        self.media = MediaService(config, self.clock, self.state)
        self.inbound = InboundService(
            config, self.clock, self.state, self.delivery, lambda: self._webhook_url
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.delivery.start()

    async def stop(self) -> None:
        await self.delivery.stop()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- configuration that may change at run time ------------------------------------------

    @property
    def webhook_url(self) -> str | None:
        return self._webhook_url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self._webhook_url = url

    # --- the Graph API and the user side ----------------------------------------------------

    def send(self, phone_number_id: str, body: Any) -> GraphResult:
        """Handle a `POST /{phone_number_id}/messages` body (a send or a mark-as-read)."""
        return self.sender.handle(phone_number_id, body)

    async def receive_inbound(self, request: InboundRequest) -> tuple[int, dict[str, Any]]:
        return await self.inbound.receive(request)

    async def settle(self, max_wait: float = 30.0) -> None:
        """Wait until every webhook due at the current emulator time has been attempted."""
        await self.delivery.settle(max_wait)

    # --- control ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything seen; keep the configuration, the webhook URL and the clock."""
        self.delivery.clear()
        self.state.reset()
        self.faults.reset()
        self.sender.limits.clear()
        log.info("reset    all state cleared")

    def advance_clock(self, seconds: float) -> float:
        if not isinstance(self.clock, AdvanceableClock):
            raise TypeError(f"{type(self.clock).__name__} cannot be advanced")
        self.clock.advance(seconds)
        return self.clock.now()

    def set_last_inbound(self, phone_number_id: str, user: str, at: float | None) -> None:
        """Open (or age) a user's window as if they last wrote at `at`; None closes it."""
        key = user_key(user)
        if at is None:
            self.state.windows.close(phone_number_id, key)
        else:
            self.state.windows.touch(phone_number_id, key, at)

    def window(self, phone_number_id: str, user: str) -> dict[str, Any]:
        key = user_key(user)
        last = self.state.windows.last_inbound(phone_number_id, key)
        now = self.clock.now()
        is_open = last is not None and now - last < self.config.window_seconds
        return {
            "phone_number_id": phone_number_id,
            "user": key,
            "last_inbound_at": last,
            "expires_at": last + self.config.window_seconds if last is not None else None,
            "open": is_open,
        }

    def windows(self) -> list[dict[str, Any]]:
        return [self.window(pnid, user) for pnid, user, _ in self.state.windows.items()]

    def record_request(
        self, method: str, path: str, query: str, status: int, body: Any, response: Any
    ) -> None:
        self.state.requests.append(
            RequestRecord(
                seq=self.state.next_seq(),
                time=self.clock.now(),
                method=method,
                path=path,
                query=query,
                status=status,
                body=body,
                response=response,
            )
        )

    # --- queries (the control API and tests read these) --------------------------------------

    def outbound(
        self, *, to: str | None = None, kind: str = "message", since: int = 0
    ) -> list[OutboundRecord]:
        key = user_key(to) if to else None
        return [
            record
            for record in self.state.outbound
            if record.seq > since
            and (kind == "all" or record.kind == kind)
            and (key is None or record.recipient == key)
        ]

    def webhook_attempts(self, *, kind: str | None = None, since: int = 0) -> list[WebhookAttempt]:
        return [
            attempt
            for attempt in self.state.webhooks
            if attempt.seq > since and (kind is None or attempt.kind == kind)
        ]

    def requests(self, *, since: int = 0) -> list[RequestRecord]:
        return [record for record in self.state.requests if record.seq > since]
