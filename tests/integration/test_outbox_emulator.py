"""The outbox over real loopback HTTP: the emulator under uvicorn, signed status webhooks to a
real receiver that hands them to the outbox, wall-clock time (tiny retry delays)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.metrics import MetricsProbe
from tests.support.servers import serve_on_loopback
from whatsray.outbox import InMemoryLedger, OutboundItem, OutboundRecord, Outbox, RetryPolicy
from whatsray.retries import Backoff
from whatsray.store import Store
from whatsray.whatsapp.emulator import EmulatorConfig, StatusDelays, create_emulator_app
from whatsray.whatsapp.events import StatusEvent
from whatsray.whatsapp.graph_client import GraphClient
from whatsray.whatsapp.parsing import parse_webhook
from whatsray.whatsapp.signature import SIGNATURE_HEADER, verify_signature

pytestmark = pytest.mark.integration

SECRET = "outbox-loopback-secret"
TOKEN = "outbox-loopback-token"
PNID = "106540352242922"
USER = "+15551234567"
OTHER_USER = "+15557654321"


@dataclass
class StatusReceiver:
    """Runs in uvicorn's thread; applies each verified status on the test's event loop."""

    loop: asyncio.AbstractEventLoop
    outbox: Outbox | None = None
    refused: int = 0
    applied: list[str | None] = field(default_factory=list)

    async def webhook(self, request: Request) -> Response:
        raw = await request.body()
        if not verify_signature(SECRET, raw, request.headers.get(SIGNATURE_HEADER)):
            self.refused += 1
            return Response(status_code=403)
        for event in parse_webhook(raw):
            if isinstance(event, StatusEvent) and self.outbox is not None:
                future = asyncio.run_coroutine_threadsafe(
                    self.outbox.apply_status(event), self.loop
                )
                self.applied.append(await asyncio.wrap_future(future))
        return Response("ok")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/webhook", self.webhook, methods=["POST"])])


@dataclass
class Loopback:
    control: httpx.AsyncClient
    graph: GraphClient
    receiver: StatusReceiver
    ledger: InMemoryLedger

    async def window_lookup(self, chat: str) -> float | None:
        """Ask the emulator's control API when the user last wrote."""
        user = chat.split(":", 1)[1]
        windows = (await self.control.get("/emulator/windows")).json()
        times = [w["last_inbound_at"] for w in windows if w["user"] == user]
        return times[0] if times else None

    async def open_window(self, user: str) -> None:
        response = await self.control.post("/emulator/windows", json={"user": user, "open": True})
        assert response.status_code == 200, response.text

    async def outbound(self) -> list[dict[str, object]]:
        return list((await self.control.get("/emulator/outbound")).json())

    def item(self, outbound_id: str, text: str, to: str, part: int = 0) -> OutboundItem:
        body = {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": text}}
        chat = f"{PNID}:{to.lstrip('+')}"
        return OutboundItem(outbound_id, chat, PNID, to, body, outbound_id, part, 0.0)


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    receiver = StatusReceiver(asyncio.get_running_loop())
    with serve_on_loopback(receiver.app()) as receiver_url:
        config = EmulatorConfig(
            app_secret=SECRET,
            access_token=TOKEN,
            webhook_url=f"{receiver_url}/webhook",
            status_delays=StatusDelays(sent=0.0, delivered=0.01, read=0.02),
        )
        with serve_on_loopback(create_emulator_app(config)) as emulator_url:
            async with (
                httpx.AsyncClient(base_url=emulator_url, timeout=10) as control,
                httpx.AsyncClient(timeout=10) as http,
            ):
                graph = GraphClient(http, TOKEN, PNID, base_url=emulator_url)
                yield Loopback(control, graph, receiver, InMemoryLedger())
                # Stop forwarding, and let webhooks in flight finish while this loop still
                # runs (the receiver thread waits on it; the server shutdown below blocks it).
                receiver.outbox = None
                await control.post("/emulator/settle", json={"timeout": 5})


def _outbox(loopback: Loopback, **overrides: Any) -> Outbox:
    outbox = Outbox(
        PNID,
        loopback.graph,
        loopback.ledger,
        retry=RetryPolicy(max_attempts=4, base_s=0.01, max_delay_s=0.05),
        window_lookup=loopback.window_lookup,
        ambiguous_grace_s=0.5,
        grace_poll_s=0.02,
        **overrides,
    )
    loopback.receiver.outbox = outbox
    return outbox


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    # The limit only bounds a broken run; nothing here measures time.
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_a_reply_is_sent_in_order_once_and_ends_read(loopback: Loopback) -> None:
    await loopback.open_window(USER)
    async with _outbox(loopback) as outbox:
        items = [loopback.item(f"t1:{i}", f"part {i}", USER, i) for i in range(3)]
        records = await outbox.submit(items)
        again = await outbox.submit(items)  # a retried turn

        sent = await loopback.outbound()
        assert [m["body"]["text"]["body"] for m in sent] == ["part 0", "part 1", "part 2"]  # type: ignore[index]
        assert [r.wamid for r in records] == [m["wamid"] for m in sent]
        assert [r.wamid for r in again] == [r.wamid for r in records]

        async def all_read() -> bool:
            stored = [await loopback.ledger.get_outbound(i.outbound_id) for i in items]
            return all(r is not None and r.status == "read" for r in stored)

        await _eventually(all_read, "every part read")
    assert loopback.receiver.refused == 0


async def test_faults_are_retried_or_dead_lettered(loopback: Loopback) -> None:
    await loopback.open_window(USER)
    await loopback.open_window(OTHER_USER)
    faults = {
        "next_errors": {"code": 131000, "count": 2},
        "recipient_errors": {OTHER_USER: {"code": 131026}},
    }
    assert (await loopback.control.post("/emulator/faults", json=faults)).status_code == 200
    async with _outbox(loopback) as outbox:
        [delivered] = await outbox.submit([loopback.item("t1:0", "retried", USER)])
        [dead] = await outbox.submit([loopback.item("t2:0", "undeliverable", OTHER_USER)])

    assert delivered.wamid is not None and delivered.attempts == 3
    assert dead.status == "dead"
    [letter] = loopback.ledger.dead_letters.values()
    assert (letter.outbound_id, letter.error_code) == ("t2:0", 131026)
    outcomes = [(m["to"], m["outcome"], m["error_code"]) for m in await loopback.outbound()]
    assert outcomes == [
        (USER, "rejected", 131000),
        (USER, "rejected", 131000),
        (USER, "accepted", None),
        (OTHER_USER, "rejected", 131026),
    ]


async def test_over_the_duckdb_store_a_restart_sends_nothing_twice(
    loopback: Loopback, tmp_path: Path, recorded: MetricsProbe
) -> None:
    # The same guarantees with the real ledger: a DuckDB file, closed and reopened in between.
    await loopback.open_window(USER)
    await loopback.open_window(OTHER_USER)
    await loopback.control.post(
        "/emulator/faults", json={"recipient_errors": {OTHER_USER: {"code": 131026}}}
    )
    path = tmp_path / "whatsray.duckdb"
    items = [loopback.item(f"t1:{i}", f"part {i}", USER, i) for i in range(2)]
    async with Store(path) as store:
        loopback.ledger = store  # type: ignore[assignment]
        async with _outbox(loopback) as outbox:
            await outbox.submit(items)
            [dead] = await outbox.submit([loopback.item("t2:0", "no luck", OTHER_USER)])
    assert dead.status == "dead"

    await loopback.control.delete("/emulator/faults")
    sent_before = recorded.value("whatsray_outbox_sends_total", result="sent")
    async with Store(path) as store:
        loopback.ledger = store  # type: ignore[assignment]
        async with _outbox(loopback) as restarted:
            again = await restarted.submit(items)
            [letter] = await store.list_dead_letters()
            replays = [await restarted.replay_dead_letter(letter.dead_letter_id) for _ in range(2)]

            assert (
                recorded.value("whatsray_outbox_sends_total", result="sent") - sent_before == 1
            )  # only the replay
            assert all(r.status in {"sent", "delivered", "read"} and r.wamid for r in again)
            assert replays[0].wamid is not None and replays[0].wamid == replays[1].wamid

    accepted = [m for m in await loopback.outbound() if m["outcome"] == "accepted"]
    assert [m["body"]["text"]["body"] for m in accepted] == ["part 0", "part 1", "no luck"]  # type: ignore[index]


class ActorDiedError(Exception):
    """Named as Ray's: the Store actor died and is being restarted (`is_transient` knows it)."""


class FlakyStore:
    """The real `Store`, except that `get_outbound` raises the errors queued for an id, one per
    call, before it works again."""

    def __init__(self, store: Store, fail: dict[str, list[Exception]]) -> None:
        self._store = store
        self._fail = fail
        self.raised: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def get_outbound(self, outbound_id: str) -> OutboundRecord | None:
        errors = self._fail.get(outbound_id)
        if errors:
            self.raised.append(outbound_id)
            raise errors.pop(0)
        return await self._store.get_outbound(outbound_id)


QUICK = Backoff(initial_s=0.01, max_s=0.05)


async def test_over_the_duckdb_store_a_background_send_outlives_a_store_outage(
    loopback: Loopback, tmp_path: Path
) -> None:
    # The admin API's and the tools' dispatch: recorded by the caller, read back by the outbox.
    await loopback.open_window(USER)
    items = [loopback.item(f"t1:{i}", f"part {i}", USER, i) for i in range(2)]
    async with Store(tmp_path / "whatsray.duckdb") as store:
        for item in items:
            assert await store.record_outbound(item)
        flaky = FlakyStore(store, {"t1:0": [ActorDiedError("the Store actor is restarting")] * 3})
        loopback.ledger = flaky  # type: ignore[assignment]
        async with _outbox(loopback, background_retry=QUICK) as outbox:
            await outbox.dispatch(items)
            await outbox.wait_idle()  # no restart, no sweep: the live outbox retried it

            assert flaky.raised == ["t1:0"] * 3
            for item in items:
                stored = await store.get_outbound(item.outbound_id)
                assert stored is not None and stored.wamid is not None, item.outbound_id
            assert await store.list_dead_letters() == []
        await loopback.control.post("/emulator/settle", json={"timeout": 5})
        accepted = [m for m in await loopback.outbound() if m["outcome"] == "accepted"]
        assert [m["body"]["text"]["body"] for m in accepted] == ["part 0", "part 1"]  # type: ignore[index]


async def test_over_the_duckdb_store_a_background_send_that_hits_a_bug_is_a_dead_letter(
    loopback: Loopback, tmp_path: Path
) -> None:
    await loopback.open_window(USER)
    [item] = [loopback.item("t1:0", "after the fix", USER)]
    async with Store(tmp_path / "whatsray.duckdb") as store:
        assert await store.record_outbound(item)
        flaky = FlakyStore(store, {"t1:0": [TypeError("a bug in the read path")]})
        loopback.ledger = flaky  # type: ignore[assignment]
        async with _outbox(loopback, background_retry=QUICK) as outbox:
            await outbox.dispatch([item])
            await outbox.wait_idle()

            assert flaky.raised == ["t1:0"]  # not retried
            assert await loopback.outbound() == []
            [letter] = await store.list_dead_letters()  # listed, as the admin API shows them
            assert (letter.outbound_id, letter.reason) == ("t1:0", "internal_error:TypeError")
            stored = await store.get_outbound("t1:0")
            assert stored is not None and stored.status == "dead"

            replay = await outbox.replay_dead_letter(letter.dead_letter_id)
            assert replay.wamid is not None
        accepted = [m for m in await loopback.outbound() if m["outcome"] == "accepted"]
        assert [m["body"]["text"]["body"] for m in accepted] == ["after the fix"]  # type: ignore[index]
