"""Human handoff and templates through the whole pipeline in one process, no Ray: the emulator's
signed webhooks -> inbox (real Valkey) -> session hosts -> store (real DuckDB) -> outbox (with
templates) -> emulator, plus the admin API's handoff routes over the same hosts (built by
whatsray/in_process.py).

The operator is a WhatsApp user of the emulator (OPERATOR); the bot's agent echoes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from whatsray.agents import parse_agents_config
from whatsray.in_process import ADMIN, OPERATOR, SECRET, wired_platform
from whatsray.inbox import Inbox, partition_for
from whatsray.outbox import OutboundItem, Outbox, parse_templates
from whatsray.pipeline.host import SessionHostCore
from whatsray.store import Store
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID, StatusDelays
from whatsray.whatsapp.emulator.clock import SystemClock
from whatsray.whatsapp.emulator.core import Emulator
from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.messages import TextMessage
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign

PNID = DEFAULT_PHONE_NUMBER_ID
PARTITIONS = 2
AUTH = {"Authorization": f"Bearer {ADMIN}"}
TEMPLATES = parse_templates(
    {
        "templates": {
            "default": {"name": "generic_notice", "language": "en_US", "body": ["{text}"]},
            "handoff_notice": {"name": "operator_notice", "language": "en_US", "body": ["{text}"]},
        }
    }
)
CONFIG = parse_agents_config(
    {
        "engines": {"scripted": {"engine": "scripted", "mode": "echo"}},
        "router": {"default_agent": "assistant", "classifier": False},
        "agents": [
            {
                "name": "assistant",
                "description": "general assistant",
                "system_prompt": "Be brief.",
                "engine": "scripted",
            }
        ],
    }
)


def chat_of(user: str) -> ChatKey:
    return ChatKey(phone_number_id=PNID, user=user)


class Clock(SystemClock):
    """The platform's clock: wall time plus an `offset` the tests move forward."""

    def __init__(self) -> None:
        super().__init__()
        self._ahead = 0.0

    @property
    def offset(self) -> float:
        return self._ahead

    @offset.setter
    def offset(self, seconds: float) -> None:
        self.advance(seconds - self._ahead)
        self._ahead = seconds


@dataclass
class Rig:
    emulator: Emulator
    control: httpx.AsyncClient
    to_bot: httpx.AsyncClient
    admin: httpx.AsyncClient
    store: Store
    outbox: Outbox
    hosts: list[SessionHostCore]
    clock: Clock

    def host_for(self, chat: ChatKey) -> SessionHostCore:
        return self.hosts[partition_for(chat, PARTITIONS)]

    async def say(self, user: str, text: str, *, quoting: str | None = None, name: str = "") -> str:
        message: dict[str, Any] = {"type": "text", "text": text}
        if quoting is not None:
            message["context"] = {"message_id": quoting}
        body: dict[str, Any] = {"from": user, "message": message}
        if name:
            body["profile_name"] = name
        response = await self.control.post("/emulator/inbound", json=body)
        assert response.status_code == 200, response.text
        wamid: str = response.json()["wamid"]
        return wamid

    def received(self, user: str) -> list[Any]:
        return [r for r in self.emulator.outbound(to=user) if r.outcome == "accepted"]

    async def wait_for(self, user: str, count: int, within_s: float = 15.0) -> list[dict[str, Any]]:
        """Until `user` got `count` messages; their send bodies."""
        deadline = time.monotonic() + within_s
        while True:
            got = self.received(user)
            if len(got) >= count or time.monotonic() > deadline:
                return [r.body for r in got]
            await asyncio.sleep(0.05)

    async def quiet(self) -> None:
        """Until the inbox is drained and the sends settled (a wrong extra send shows by then)."""
        await asyncio.sleep(0.3)
        for host in self.hosts:
            await host.registry.wait_idle()
        await self.outbox.wait_idle()

    async def flip(self, user: str, action: str) -> httpx.Response:
        """`POST /api/chats/{user}/{action}` once the chat's session is idle.

        A flag flipped while the session is absorbing other items is only seen at its next
        turn (session.py reads the state it loaded before absorbing; reported to the lead)."""
        await self.quiet()
        return await self.admin.post(f"/api/chats/{user}/{action}", headers=AUTH)

    async def until(self, check: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
        deadline = time.monotonic() + within_s
        while not await check():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.05)


def text_of(body: dict[str, Any]) -> str:
    if body["type"] == "text":
        return str(body["text"]["body"])
    [component] = body["template"]["components"]
    return f"[{body['template']['name']}] {component['parameters'][0]['text']}"


@contextlib.asynccontextmanager
async def handoff_rig(
    redis: aioredis.Redis,
    db: Path,
    *,
    window_failure_mode: str = "sync",
    release_after_s: float | None = None,
    sweep_every_s: float = 60.0,
) -> AsyncIterator[Rig]:
    clock = Clock()
    async with wired_platform(
        CONFIG,
        Inbox(redis, partitions=PARTITIONS),
        db,
        clock=clock,
        templates=TEMPLATES,
        # Only `sent` (at once; `failed` in async mode): fewer late webhooks that keep a
        # session busy while a test flips the flag (see `Rig.flip`).
        status_delays=StatusDelays(sent=0.0, delivered=None, read=None),
        window_failure_mode=window_failure_mode,  # type: ignore[arg-type]
        sweep_every_s=sweep_every_s,
        handoff_release_after_s=release_after_s,
    ) as p:
        # Without the token (`p.admin` sends it): the tests send it, or show it is needed.
        transport = httpx.ASGITransport(p.admin_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as admin:
            yield Rig(p.emulator, p.control, p.to_bot, admin, p.store, p.outbox, p.hosts, clock)


@pytest.fixture
async def rig(redis: aioredis.Redis, tmp_path: Path) -> AsyncIterator[Rig]:
    async with handoff_rig(redis, tmp_path / "whatsray.duckdb") as running:
        yield running


# --- handoff: forward, relay, release -----------------------------------------------------------


async def test_a_handed_off_chat_is_forwarded_to_the_operator_who_answers_through_the_bot(
    rig: Rig,
) -> None:
    ana = "15551110001"
    await rig.say(ana, "hi", name="Ana")
    assert [text_of(b) for b in await rig.wait_for(ana, 1)] == ["echo: hi"]

    response = await rig.flip(f"{PNID}%3A{ana}", "handoff")
    assert response.status_code == 200, response.text
    assert response.json()["handoff"] is True
    listed = (await rig.admin.get("/api/handoffs", headers=AUTH)).json()["chats"]
    assert [c["chat"] for c in listed] == [str(chat_of(ana))]

    # The bot is silent; the operator never wrote, so the forward goes as the notice template.
    await rig.say(ana, "I need a human", name="Ana")
    [notice] = await rig.wait_for(OPERATOR, 1)
    assert text_of(notice) == "[operator_notice] Ana (+15551110001): I need a human"
    await rig.quiet()
    assert len(rig.received(ana)) == 1

    # The operator writes (opening their window): no chat quoted, so the most recent handoff.
    await rig.say(OPERATOR, "Hello Ana, I am Bob from the team.")
    bodies = await rig.wait_for(ana, 2)
    assert text_of(bodies[-1]) == "Hello Ana, I am Bob from the team."

    # Now the operator's window is open: forwards are free text.
    await rig.say(ana, "my order 42 is late", name="Ana")
    bodies = await rig.wait_for(OPERATOR, 2)
    assert text_of(bodies[-1]) == "Ana (+15551110001): my order 42 is late"
    forward_wamid = rig.received(OPERATOR)[-1].wamid

    # Another user is handed off after Ana, so "most recent" would be them; a quoted reply
    # to Ana's forwarded message still goes to Ana.
    cy = "15551110002"
    await rig.say(cy, "hello", name="Cy")
    await rig.wait_for(cy, 1)
    assert (await rig.flip(cy, "handoff")).status_code == 200
    await rig.say(OPERATOR, "It ships tomorrow.", quoting=forward_wamid)
    bodies = await rig.wait_for(ana, 3)
    assert text_of(bodies[-1]) == "It ships tomorrow."
    await rig.quiet()
    assert len(rig.received(cy)) == 1  # Cy got only the bot's first answer

    # Everything is in Ana's history for the admin API: her messages and the operator's.
    page = (await rig.admin.get(f"/api/messages/{ana}", headers=AUTH)).json()["messages"]
    assert [(m["direction"], m["text"]) for m in page] == [
        ("in", "hi"),
        ("out", "echo: hi"),
        ("in", "I need a human"),
        ("out", "Hello Ana, I am Bob from the team."),
        ("in", "my order 42 is late"),
        ("out", "It ships tomorrow."),
    ]
    # The operator's own messages never got a bot turn.
    assert await rig.store.count_turns(chat_of(OPERATOR)) == 0

    # Released: the bot answers Ana again.
    response = await rig.flip(ana, "release")
    assert response.status_code == 200 and response.json()["handoff"] is False
    await rig.say(ana, "thanks", name="Ana")
    bodies = await rig.wait_for(ana, 4)
    assert text_of(bodies[-1]) == "echo: thanks"


async def test_the_operator_releases_a_chat_with_a_command_and_is_told_when_none_is_open(
    rig: Rig,
) -> None:
    await rig.say(OPERATOR, "anyone?")
    [answer] = await rig.wait_for(OPERATOR, 1)
    assert text_of(answer).startswith("No chat is handed off to you")

    dee = "15551110003"
    await rig.say(dee, "hi")
    await rig.wait_for(dee, 1)
    await rig.flip(dee, "handoff")
    await rig.say(OPERATOR, "/release")
    bodies = await rig.wait_for(OPERATOR, 2)
    assert text_of(bodies[-1]) == "15551110003 is back with the bot."
    chat = await rig.store.get_chat(chat_of(dee))
    assert chat is not None and chat.handoff is False
    await rig.say(dee, "still there?")
    bodies = await rig.wait_for(dee, 2)
    assert text_of(bodies[-1]) == "echo: still there?"


# --- the admin routes -------------------------------------------------------------------------


async def test_handoff_routes_need_the_token_and_a_known_chat(rig: Rig) -> None:
    eve = "15551110004"
    await rig.say(eve, "hi")
    await rig.wait_for(eve, 1)
    for path in (f"/api/chats/{eve}/handoff", f"/api/chats/{eve}/release", "/api/handoffs"):
        method = "GET" if path.endswith("handoffs") else "POST"
        assert (await rig.admin.request(method, path)).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await rig.admin.request(method, path, headers=wrong)).status_code == 403
    unknown = await rig.admin.post("/api/chats/15559999999/handoff", headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    other_number = await rig.admin.post(f"/api/chats/999%3A{eve}/handoff", headers=AUTH)
    assert other_number.status_code == 404
    bad = await rig.admin.post(f"/api/chats/{PNID}%3A/handoff", headers=AUTH)
    assert bad.status_code == 422
    chat = await rig.store.get_chat(chat_of(eve))
    assert chat is not None and chat.handoff is False  # refused requests changed nothing
    # Idempotent both ways.
    for _ in range(2):
        assert (await rig.admin.post(f"/api/chats/{eve}/handoff", headers=AUTH)).json()["handoff"]
    for _ in range(2):
        response = await rig.admin.post(f"/api/chats/{eve}/release", headers=AUTH)
        assert response.json()["handoff"] is False


async def test_handoff_reaches_a_live_session_mid_conversation(rig: Rig) -> None:
    fay = "15551110005"
    await rig.say(fay, "one")
    await rig.wait_for(fay, 1)
    assert rig.host_for(chat_of(fay)).registry.state_of(chat_of(fay)) is not None  # cached
    await rig.flip(fay, "handoff")
    await rig.say(fay, "two")
    await rig.wait_for(OPERATOR, 1)
    await rig.quiet()
    assert [text_of(r.body) for r in rig.received(fay)] == ["echo: one"]


# --- automatic release ------------------------------------------------------------------------


async def test_an_idle_handoff_is_released_by_the_hosts_sweep(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    async with handoff_rig(
        redis, tmp_path / "w.duckdb", release_after_s=600, sweep_every_s=0.05
    ) as rig:
        gus, hal = "15551110006", "15551110007"
        for user in (gus, hal):
            await rig.say(user, "hi")
            await rig.wait_for(user, 1)
            await rig.flip(user, "handoff")
        rig.clock.offset = 500  # not idle long enough yet
        await asyncio.sleep(0.3)
        assert len((await rig.admin.get("/api/handoffs", headers=AUTH)).json()["chats"]) == 2
        await rig.say(hal, "still here")  # activity: hal's idle time starts again
        await rig.wait_for(OPERATOR, 1)
        rig.clock.offset = 650  # gus idle 650 s, hal about 150 s

        async def gus_released() -> bool:
            chat = await rig.store.get_chat(chat_of(gus))
            return chat is not None and not chat.handoff

        await rig.until(gus_released)
        hal_chat = await rig.store.get_chat(chat_of(hal))
        assert hal_chat is not None and hal_chat.handoff
        assert sum(h.desk.released for h in rig.hosts) == 1
        await rig.say(gus, "back?")
        bodies = await rig.wait_for(gus, 2)
        assert text_of(bodies[-1]) == "echo: back?"


# --- business app echoes ------------------------------------------------------------------------


def echo_webhook(to: str, wamid: str, text: str) -> bytes:
    document = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "smb_message_echoes",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": PNID,
                            },
                            "message_echoes": [
                                {
                                    "from": "15550783881",
                                    "to": to,
                                    "id": wamid,
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(document).encode()


async def test_a_business_app_echo_hands_the_chat_to_a_person(rig: Rig) -> None:
    ivy = "15551110008"
    await rig.say(ivy, "hi")
    await rig.wait_for(ivy, 1)
    body = echo_webhook(ivy, "wamid.ECHO1", "Hi Ivy, Jo here from the shop.")
    for _ in range(2):  # Meta delivers at least once
        response = await rig.to_bot.post(
            "/webhook", content=body, headers={SIGNATURE_HEADER: sign(SECRET, body)}
        )
        assert response.status_code == 200

    async def handed_off() -> bool:
        chat = await rig.store.get_chat(chat_of(ivy))
        return chat is not None and chat.handoff

    await rig.until(handed_off)
    await rig.say(ivy, "great, thanks Jo")
    await rig.wait_for(OPERATOR, 1)
    await rig.quiet()
    assert [text_of(r.body) for r in rig.received(ivy)] == ["echo: hi"]  # the bot kept quiet
    page = (await rig.admin.get(f"/api/messages/{ivy}", headers=AUTH)).json()["messages"]
    assert [(m["direction"], m["text"], m["status"]) for m in page] == [
        ("in", "hi", "received"),
        ("out", "echo: hi", page[1]["status"]),
        ("out", "Hi Ivy, Jo here from the shop.", "sent"),
        ("in", "great, thanks Jo", "received"),
    ]
    assert page[2]["wamid"] == "wamid.ECHO1"
    # Not in the outbound ledger: the outbox must never send an echo.
    assert await rig.store.get_outbound_by_wamid("wamid.ECHO1") is None
    assert await rig.store.get_outbound("wamid.ECHO1") is None


# --- templates in the pipeline, both window modes -------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_reminder_outside_the_window_goes_as_a_template_once(
    redis: aioredis.Redis, tmp_path: Path, mode: str
) -> None:
    async with handoff_rig(redis, tmp_path / "w.duckdb", window_failure_mode=mode) as rig:
        jan = "15551110009"
        await rig.say(jan, "hi")
        await rig.wait_for(jan, 1)
        # The user last wrote 25 h ago. Sync: our own check sees it (nothing reaches Meta).
        # Async: our record is stale ("open"), Meta accepts the text, then fails it (131047).
        rig.emulator.set_last_inbound(PNID, jan, time.time() - 25 * 3600)
        if mode == "sync":
            await rig.store.update_chat(chat_of(jan), last_inbound_at=time.time() - 25 * 3600)
        item = OutboundItem(
            outbound_id="job-7:run-1",
            chat=str(chat_of(jan)),
            phone_number_id=PNID,
            to=f"+{jan}",
            body=TextMessage(to=f"+{jan}", body="call mom").to_graph_body(),
            created_at=time.time(),
            purpose="reminder",
        )
        assert await rig.store.record_outbound(item)
        stored = await rig.store.get_outbound("job-7:run-1")
        assert stored is not None and stored.purpose == "reminder"  # migration 4
        await rig.outbox.dispatch([item])
        expected = ["echo: hi", "[generic_notice] call mom"]
        if mode == "async":
            expected.insert(1, "call mom")  # accepted, then failed by its status webhook
        bodies = await rig.wait_for(jan, len(expected))
        await rig.quiet()
        await rig.outbox.dispatch([item])  # again: nothing more
        await rig.quiet()
        assert [text_of(r.body) for r in rig.received(jan)] == expected
        assert bodies[-1]["biz_opaque_callback_data"] == "job-7:run-1:template"
        assert await rig.store.count_dead_letters() == 0
        template = await rig.store.get_outbound("job-7:run-1:template")
        assert template is not None and template.purpose == "reminder"
