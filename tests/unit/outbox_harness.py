"""Shared rig for the outbox tests: the real emulator in-process on a fake clock, a GraphClient
talking to it through `httpx.ASGITransport`, an in-memory ledger, and status webhooks flowing
back into the outbox under test.

Time: the outbox sleeps on a `TimeMachine`, which moves the emulator's fake clock straight to
the earliest sleeper's wake-up time once the event loop has run dry, delivers the webhooks that
became due, then wakes that sleeper. Nothing waits in real time, and no sleeper ever wakes early
or late, so the outbox's buckets and the emulator's see exactly the same instants.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from emulator_harness import AUTH, PNID, TOKEN, Harness, Receiver, emulator_harness
from starlette.requests import Request
from starlette.responses import Response

from whatsray.outbox import InMemoryLedger, OutboundItem, Outbox, RetryPolicy
from whatsray.whatsapp.emulator.state import user_key
from whatsray.whatsapp.events import StatusEvent
from whatsray.whatsapp.graph_client import GraphClient
from whatsray.whatsapp.parsing import parse_webhook

__all__ = [
    "AUTH",
    "PNID",
    "LosingTransport",
    "OutboxRig",
    "StatusForwarder",
    "TimeMachine",
    "losing_graph",
    "outbox_rig",
]


@dataclass
class StatusForwarder(Receiver):
    """The webhook receiver, also handing every accepted status to the current outbox."""

    target: Outbox | None = None
    results: list[str | None] = field(default_factory=list)
    # Statuses to hold back instead of forwarding (the webhook "gets lost" on our side).
    drop: bool = False

    async def endpoint(self, request: Request) -> Response:
        response = await super().endpoint(request)
        delivery = self.deliveries[-1]
        if delivery.answered == 200 and self.target is not None and not self.drop:
            for event in parse_webhook(delivery.body):
                if isinstance(event, StatusEvent):
                    self.results.append(await self.target.apply_status(event))
        return response


class TimeMachine:
    """A sleep on the emulator's fake clock, driven forward whenever everything else waits."""

    def __init__(self, harness: Harness) -> None:
        self._harness = harness
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._task: asyncio.Task[None] | None = None

    def now(self) -> float:
        return self._harness.clock.now()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now() + seconds, next(self._order), future))
        await future

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drive())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _drive(self) -> None:
        while True:
            # Let every runnable task (HTTP calls through ASGITransport included) run first.
            for _ in range(200):
                await asyncio.sleep(0)
            while self._sleepers and self._sleepers[0][2].done():  # cancelled sleepers
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                await asyncio.sleep(0.001)
                continue
            target = self._sleepers[0][0]
            if target > self.now():
                self._harness.clock.advance(target - self.now())
            await self._harness.emulator.settle(max_wait=5)
            while self._sleepers and self._sleepers[0][0] <= self.now():
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)


@dataclass
class OutboxRig:
    harness: Harness
    receiver: StatusForwarder
    ledger: InMemoryLedger
    graph: GraphClient
    time: TimeMachine
    http: httpx.AsyncClient

    def outbox(self, **overrides: Any) -> Outbox:
        """A new Outbox on this rig's ledger; status webhooks go to the newest one."""
        settings: dict[str, Any] = {
            "now": self.time.now,
            "sleep": self.time.sleep,
            "window_lookup": self.last_inbound,
            "retry": RetryPolicy(max_attempts=4),
            "ambiguous_grace_s": 10.0,
            "grace_poll_s": 0.5,
        }
        settings.update(overrides)
        graph = settings.pop("graph", self.graph)
        ledger = settings.pop("ledger", self.ledger)
        outbox = Outbox(PNID, graph, ledger, **settings)
        self.receiver.target = outbox
        return outbox

    async def last_inbound(self, chat: str) -> float | None:
        """The window lookup: what the emulator knows about the user's last message."""
        user = chat.split(":", 1)[1]
        return self.harness.emulator.state.windows.last_inbound(PNID, user_key(user))

    def open_window(self, user: str, age_s: float = 0.0) -> None:
        self.harness.emulator.set_last_inbound(PNID, user, self.time.now() - age_s)

    def item(self, outbound_id: str, text: str, to: str, *, part: int = 0) -> OutboundItem:
        return OutboundItem(
            outbound_id=outbound_id,
            chat=f"{PNID}:{user_key(to)}",
            phone_number_id=PNID,
            to=to,
            body={
                "messaging_product": "whatsapp",
                "to": to,
                "type": "text",
                "text": {"body": text},
            },
            turn_id=outbound_id.rsplit(":", 1)[0],
            part=part,
            created_at=self.time.now(),
        )

    def reply(self, turn_id: str, to: str, *texts: str) -> list[OutboundItem]:
        return [self.item(f"{turn_id}:{i}", text, to, part=i) for i, text in enumerate(texts)]

    def accepted(self, to: str | None = None) -> list[Any]:
        """The emulator's log of accepted message sends (what a user would receive)."""
        return [r for r in self.harness.emulator.outbound(to=to) if r.outcome == "accepted"]

    def texts(self, to: str | None = None) -> list[str]:
        return [r.body["text"]["body"] for r in self.accepted(to)]

    def rejected_codes(self) -> list[int | None]:
        return [r.error_code for r in self.harness.emulator.outbound() if r.outcome != "accepted"]

    async def settle(self) -> None:
        await self.harness.emulator.settle(max_wait=5)


class LosingTransport(httpx.AsyncBaseTransport):
    """Forwards to the emulator, but loses the next `lose` answers: the request was handled
    (the message sent) and the client sees a read timeout, as when Meta answers too late.
    With `hang`, a lost answer never comes at all (the caller waits until cancelled: a process
    killed between the send and `mark_sent`)."""

    def __init__(self, inner: httpx.AsyncClient, lose: int = 0, *, hang: bool = False) -> None:
        self._inner = inner
        self.lose = lose
        self.hang = hang
        self.handled = asyncio.Event()  # set once a request reached the emulator

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        answer = await self._inner.request(
            request.method, str(request.url), headers=dict(request.headers), content=content
        )
        self.handled.set()
        if self.lose > 0:
            self.lose -= 1
            if self.hang:
                await asyncio.Event().wait()
            raise httpx.ReadTimeout("answer lost", request=request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


@contextlib.asynccontextmanager
async def outbox_rig(**emulator_overrides: Any) -> AsyncIterator[OutboxRig]:
    receiver = StatusForwarder()
    async with emulator_harness(receiver, **emulator_overrides) as harness:
        time = TimeMachine(harness)
        graph = GraphClient(harness.client, TOKEN, PNID, base_url="http://emulator")
        rig = OutboxRig(harness, receiver, InMemoryLedger(), graph, time, harness.client)
        time.start()
        try:
            yield rig
        finally:
            await time.stop()


@contextlib.asynccontextmanager
async def losing_graph(
    rig: OutboxRig, lose: int, *, hang: bool = False
) -> AsyncIterator[tuple[GraphClient, LosingTransport]]:
    """A GraphClient whose next `lose` sends reach the emulator but time out on the way back."""
    transport = LosingTransport(rig.http, lose, hang=hang)
    async with httpx.AsyncClient(transport=transport) as client:
        yield GraphClient(client, TOKEN, PNID, base_url="http://emulator"), transport
