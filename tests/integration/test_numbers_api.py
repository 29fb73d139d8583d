"""Several business numbers behind one admin API and one MCP server: every route that sends or
lists per number takes `phone_number_id`, an unknown one is a 422 naming it, and the MCP tools
pass it through. The deployment of tests/support/admin_stack.py with two numbers, each with its
own real `Outbox`, over one DuckDB `Store` and the in-process emulator serving both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.admin_stack import ADMIN_TOKEN, AUTH, PNID, Admin, admin_stack
from tests.support.mcp_deployment import mcp_deployment
from whatsray.admin import create_admin_router
from whatsray.outbox import OutboundItem, OutboundRecord

pytestmark = pytest.mark.integration

SHOP = "106540352299999"  # the second number; PNID (the first) is the default
NUMBERS = (PNID, SHOP)


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    async with admin_stack(tmp_path, numbers=NUMBERS) as stack:
        yield stack


async def user_writes(admin: Admin, user: str, number: str, text: str = "hi") -> None:
    await admin.user_says(user, text, phone_number_id=number)


def sent_from(admin: Admin, user: str) -> list[tuple[str, str]]:
    """(number, text) of what the emulator accepted for `user`, in order."""
    return [
        (r.phone_number_id, r.body["text"]["body"])
        for r in admin.emulator.outbound(to=user)
        if r.outcome == "accepted"
    ]


def assert_unknown_number(response: httpx.Response, where: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert where in body["message"] and "unknown business number '999'" in body["message"]
    assert PNID in body["message"] and SHOP in body["message"]  # the served ones, named
    assert [d["type"] for d in body["detail"]] == ["unknown_phone_number_id"]


async def test_each_number_sends_from_itself_and_the_first_is_the_default(admin: Admin) -> None:
    user = "15551240001"
    await user_writes(admin, user, PNID)
    await user_writes(admin, user, SHOP)
    from_shop = await admin.send(user, "from the shop", phone_number_id=SHOP)
    assert from_shop.status_code == 202, from_shop.text
    assert from_shop.json()["chat"] == f"{SHOP}:{user}"
    assert from_shop.json()["phone_number_id"] == SHOP
    default = await admin.send(user, "from the default")
    assert default.json()["chat"] == f"{PNID}:{user}"
    await admin.settled(from_shop.json()["outbound_id"])
    await admin.settled(default.json()["outbound_id"])
    assert sorted(sent_from(admin, user)) == [(PNID, "from the default"), (SHOP, "from the shop")]


async def test_the_window_is_per_number(admin: Admin) -> None:
    user = "15551240002"
    await user_writes(admin, user, PNID)  # wrote to the first number only
    refused = await admin.send(user, "hello?", phone_number_id=SHOP)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "outside_window"
    assert f"never written to {SHOP}" in refused.json()["message"]
    assert await admin.store.count_outbound() == 0


async def test_listings_filter_by_number(admin: Admin) -> None:
    await user_writes(admin, "15551240003", PNID, "to the first")
    await user_writes(admin, "15551240004", SHOP, "to the shop")
    # A user both numbers fail to reach: one dead letter on each.
    gone = "15551240005"
    for number in NUMBERS:
        await user_writes(admin, gone, number)
    fault = {"recipient_errors": {f"+{gone}": {"code": 131026}}}
    assert (await admin.control.post("/emulator/faults", json=fault)).status_code == 200
    for number in NUMBERS:
        sent = await admin.send(gone, f"lost from {number}", phone_number_id=number)
        assert (await admin.settled(sent.json()["outbound_id"])).status == "dead"

    async def listed(path: str, key: str, field: str, **params: Any) -> list[Any]:
        response = await admin.api.get(path, params=params)
        assert response.status_code == 200, response.text
        return sorted(item[field] for item in response.json()[key])

    shop_chats = await listed("/api/chats", "chats", "chat", phone_number_id=SHOP)
    assert shop_chats == [f"{SHOP}:15551240004", f"{SHOP}:{gone}"]
    assert len(await listed("/api/chats", "chats", "chat")) == 4  # no filter: both numbers
    contacts = await listed(
        "/api/contacts/search", "contacts", "chat", q="1555124000", phone_number_id=PNID
    )
    assert contacts == [f"{PNID}:15551240003", f"{PNID}:{gone}"]
    for number in NUMBERS:
        letters = await listed("/api/dead-letters", "dead_letters", "outbound_id")
        assert len(letters) == 2
        mine = (await admin.api.get("/api/dead-letters", params={"phone_number_id": number})).json()
        assert [d["message"]["text"] for d in mine["dead_letters"]] == [f"lost from {number}"]
        status = (await admin.api.get("/api/status", params={"phone_number_id": number})).json()
        assert [o["phone_number_id"] for o in status["outboxes"]] == [number]
    everything = (await admin.api.get("/api/status")).json()
    assert [o["phone_number_id"] for o in everything["outboxes"]] == list(NUMBERS)


async def test_an_unknown_number_is_a_422_naming_it_on_every_route(admin: Admin) -> None:
    await user_writes(admin, "15551240006", PNID)
    send = await admin.send("15551240006", "hi", phone_number_id="999")
    assert_unknown_number(send, "body field 'phone_number_id'")
    for path, params in [
        ("/api/chats", {}),
        ("/api/contacts/search", {"q": "1555"}),
        ("/api/dead-letters", {}),
        ("/api/status", {}),
    ]:
        answer = await admin.api.get(path, params={**params, "phone_number_id": "999"})
        assert_unknown_number(answer, "query parameter 'phone_number_id'")
    empty = await admin.api.get("/api/chats", params={"phone_number_id": ""})
    assert empty.status_code == 422 and "phone_number_id" in empty.json()["message"]
    assert await admin.store.count_outbound() == 0


class RecordingOutboxes:
    """Each number's real outbox, noting what the API dispatched and whether it said fresh."""

    def __init__(self, admin: Admin) -> None:
        assert admin.outboxes is not None
        self.outboxes = admin.outboxes
        self.calls: list[tuple[str, str, bool]] = []  # (number, outbound id, fresh)

    def __call__(self, number: str) -> Any:
        recorder, outbox = self, self.outboxes[number]

        class Port:
            async def dispatch(
                self, items: Sequence[OutboundItem], fresh: Sequence[bool] | None = None
            ) -> None:
                flags = list(fresh or [False] * len(items))
                recorder.calls += [
                    (number, i.outbound_id, f) for i, f in zip(items, flags, strict=True)
                ]
                await outbox.dispatch(items, fresh)

            async def replay_dead_letter(self, dead_letter_id: str) -> OutboundRecord:
                return await outbox.replay_dead_letter(dead_letter_id)

        return Port()


async def test_a_new_send_goes_to_its_numbers_outbox_fresh_and_a_repeat_does_not(
    admin: Admin,
) -> None:
    outboxes = RecordingOutboxes(admin)
    handoffs: list[tuple[str, bool]] = []

    async def handoff(chat: str, on: bool) -> None:
        handoffs.append((chat, on))
        await admin.store.update_chat(chat, handoff=on)

    app = FastAPI()
    app.include_router(
        create_admin_router(
            admin_token=ADMIN_TOKEN,
            store=admin.store,
            outbox_for=outboxes,
            phone_number_ids=list(NUMBERS),
            handoff=handoff,
            now=admin.clock.now,
        )
    )
    user = "15551240007"
    await user_writes(admin, user, SHOP)
    await user_writes(admin, user, PNID)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://a", headers=AUTH) as api:
        body = {"to": user, "text": "once", "phone_number_id": SHOP, "idempotency_key": "k"}
        # The shop's outbox is down (restarting): the send stays recorded and pending.
        await admin.outboxes[SHOP].close()
        first = (await api.post("/api/send-message", json=body)).json()
        # Recorded by this call, never handed over before: fresh, no grace wait needed.
        assert outboxes.calls == [(SHOP, first["outbound_id"], True)]
        # The same key again finds it pending: an earlier call may be sending it, so not fresh.
        again = await api.post("/api/send-message", json=body)
        assert (again.json()["created"], again.json()["status"]) == (False, "pending")
        assert outboxes.calls[1:] == [(SHOP, first["outbound_id"], False)]

        # The handoff listing filters by number too (and names an unknown one).
        await api.post(f"/api/chats/{SHOP}:{user}/handoff")
        await api.post(f"/api/chats/{PNID}:{user}/handoff")
        shop = (await api.get("/api/handoffs", params={"phone_number_id": SHOP})).json()
        assert [c["chat"] for c in shop["chats"]] == [f"{SHOP}:{user}"]
        assert len((await api.get("/api/handoffs")).json()["chats"]) == 2
        unknown = await api.get("/api/handoffs", params={"phone_number_id": "999"})
        assert_unknown_number(unknown, "query parameter 'phone_number_id'")
    assert sorted(handoffs) == [(f"{PNID}:{user}", True), (f"{SHOP}:{user}", True)]


async def test_the_mcp_tools_take_the_number(tmp_path: Path) -> None:
    from tests.integration.test_mcp_server import mcp_client, ok, refused

    async with mcp_deployment(tmp_path, numbers=NUMBERS) as deployment:
        admin = deployment.admin
        user = "15551240008"
        await user_writes(admin, user, PNID, "hello first")
        await user_writes(admin, user, SHOP, "hello shop")
        async with mcp_client(deployment, "stdio") as client:
            send = "whatsapp_send_message"
            shop = ok(
                await client.call_tool(send, {"to": user, "text": "s", "phone_number_id": SHOP})
            )
            default = ok(await client.call_tool(send, {"to": user, "text": "d"}))
            wrong = await client.call_tool(
                send, {"to": user, "text": "x", "phone_number_id": "999"}
            )
            chats = ok(await client.call_tool("whatsapp_get_chats", {"phone_number_id": SHOP}))
            contacts = ok(
                await client.call_tool(
                    "whatsapp_search_contacts", {"q": user, "phone_number_id": PNID}
                )
            )
            bad_filter = await client.call_tool("whatsapp_get_chats", {"phone_number_id": "999"})
        assert (shop["chat"], default["chat"]) == (f"{SHOP}:{user}", f"{PNID}:{user}")
        await admin.settled(shop["outbound_id"])
        await admin.settled(default["outbound_id"])
        assert sorted(sent_from(admin, user)) == [(PNID, "d"), (SHOP, "s")]
        hint = "does not send from that business number"
        refused(wrong, "422", "unknown business number '999'", SHOP, hint)
        refused(bad_filter, "422", "unknown business number '999'", hint)
        assert [c["chat"] for c in chats["chats"]] == [f"{SHOP}:{user}"]
        assert [c["chat"] for c in contacts["contacts"]] == [f"{PNID}:{user}"]
