"""Shared harness for the emulator unit tests: the emulator in-process on a fake clock, delivering
its webhooks to a real in-process receiver (a Starlette app behind an ASGITransport client)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from whatsray.whatsapp.emulator import (
    Emulator,
    EmulatorConfig,
    FakeClock,
    StatusDelays,
    create_emulator_app,
)
from whatsray.whatsapp.events import Event, MessageEvent, StatusEvent
from whatsray.whatsapp.parsing import parse_webhook
from whatsray.whatsapp.signature import SIGNATURE_HEADER, verify_signature

APP_SECRET = "test-app-secret"
TOKEN = "test-token"
PNID = "106540352242922"
GRAPH = f"/v25.0/{PNID}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
USER = "+15551234567"
USER_DIGITS = "15551234567"
OTHER_USER = "+15557654321"


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, str]
    answered: int


@dataclass
class Receiver:
    """A webhook endpoint that checks Meta's signature and answers with scripted statuses."""

    secret: str = APP_SECRET
    # Status codes for the next requests, in order; 200 once the script runs out.
    script: list[int] = field(default_factory=list)
    always: int | None = None
    deliveries: list[Delivery] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        raw = await request.body()
        if not verify_signature(self.secret, raw, request.headers.get(SIGNATURE_HEADER)):
            status = 403
        elif self.always is not None:
            status = self.always
        else:
            status = self.script.pop(0) if self.script else 200
        self.deliveries.append(Delivery(raw, dict(request.headers), status))
        return Response(status_code=status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/webhook", self.endpoint, methods=["POST"])])

    @property
    def accepted(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.answered == 200]

    def events(self) -> list[Event]:
        return [event for d in self.accepted for event in parse_webhook(d.body)]

    def statuses(self) -> list[StatusEvent]:
        return [e for e in self.events() if isinstance(e, StatusEvent)]

    def messages(self) -> list[MessageEvent]:
        return [e for e in self.events() if isinstance(e, MessageEvent)]


@dataclass
class Harness:
    config: EmulatorConfig
    clock: FakeClock
    emulator: Emulator
    client: httpx.AsyncClient
    receiver: Receiver

    async def send(self, to: str = USER, **overrides: Any) -> httpx.Response:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "to": to,
            "type": "text",
            "text": {"body": "hello from the bot"},
        }
        body.update(overrides)
        # An override of None drops the key (a template send has no "text").
        body = {key: value for key, value in body.items() if value is not None}
        return await self.client.post(f"{GRAPH}/messages", json=body, headers=AUTH)

    async def template(self, to: str = USER, name: str = "hello_world") -> httpx.Response:
        return await self.send(
            to, type="template", text=None, template={"name": name, "language": {"code": "en_US"}}
        )

    async def inbound(self, **body: Any) -> httpx.Response:
        body.setdefault("from", USER)
        if "messages" not in body:
            body.setdefault("message", {"type": "text", "text": "hi"})
        return await self.client.post("/emulator/inbound", json=body)

    async def advance(self, seconds: float) -> None:
        """Move the fake clock, then let every webhook now due be attempted."""
        self.clock.advance(seconds)
        await self.emulator.settle(max_wait=5)

    async def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.client.request(method, f"/emulator/{path}", **kwargs)
        assert response.status_code < 300, response.text
        return response.json()


@contextlib.asynccontextmanager
async def emulator_harness(
    receiver: Receiver | None = None, **overrides: Any
) -> AsyncIterator[Harness]:
    """The emulator with instant statuses (sent, delivered at +1 s, read at +2 s) unless
    overridden, fast retries, no status batching, and a webhook URL pointing at the receiver."""
    receiver = receiver or Receiver()
    settings: dict[str, Any] = {
        "app_secret": APP_SECRET,
        "access_token": TOKEN,
        "webhook_url": "http://receiver/webhook",
        "status_delays": StatusDelays(sent=0.0, delivered=1.0, read=2.0),
        "delivery_backoff_base_s": 1.0,
        "delivery_backoff_max_s": 8.0,
        "delivery_max_attempts": 4,
        "delivery_concurrency": 1,
        # One status per POST, so that tests can count and order POSTs; the batching tests
        # (test_emulator_batching.py) turn it on.
        "status_batch_window_s": 0.0,
    }
    settings.update(overrides)
    config = EmulatorConfig(**settings)
    clock = FakeClock()
    hook_client = httpx.AsyncClient(
        transport=httpx.ASGITransport(receiver.app()), base_url="http://receiver"
    )
    app = create_emulator_app(config, clock=clock, http=hook_client)
    emulator: Emulator = app.state.emulator
    async with (
        hook_client,
        emulator,
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://emulator") as client,
    ):
        harness = Harness(config, clock, emulator, client, receiver)
        yield harness


def json_body(delivery: Delivery) -> Any:
    return json.loads(delivery.body)
