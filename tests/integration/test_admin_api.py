"""The admin REST API through FastAPI + httpx.ASGITransport, against a real DuckDB `Store`, a real
`Outbox` and the in-process emulator, whose signed webhooks (inbound messages, statuses) reach
the store and the outbox through the real webhook receiver. One clock (the emulator's) for all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.admin_stack import (
    ADMIN_TOKEN,
    DAY,
    GRAPH_TOKEN,
    PNID,
    Admin,
    admin_stack,
)
from whatsray.admin import create_admin_router, idempotent_outbound_id
from whatsray.outbox import Outbox
from whatsray.whatsapp.graph_client import GraphClient

pytestmark = pytest.mark.integration


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    async with admin_stack(tmp_path) as stack:
        yield stack


def assert_refused(response: httpx.Response, status: int, error: str, *words: str) -> None:
    """A 4xx with an `ErrorBody` whose message names each of `words`."""
    request = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, (request, response.text)
    body = response.json()
    assert body["error"] == error, (request, body)
    for word in words:
        assert word in body["message"], (request, word, body["message"])


# --- auth -----------------------------------------------------------------------------------

EVERY_ROUTE = [
    ("POST", "/api/send-message", {"to": "15551230000", "text": "x"}),
    ("GET", f"/api/messages/{PNID}:15551230000", None),
    ("GET", "/api/chats", None),
    ("GET", "/api/contacts/search?q=ann", None),
    ("GET", "/api/dead-letters", None),
    ("POST", "/api/dead-letters/dl_nope/replay", None),
    ("GET", "/api/status", None),
]


async def test_every_route_needs_the_admin_token(admin: Admin) -> None:
    for method, path, body in EVERY_ROUTE:
        await _check_auth(admin, method, path, body)


async def _check_auth(admin: Admin, method: str, path: str, body: Any) -> None:
    missing = await admin.anon.request(method, path, json=body)
    assert_refused(missing, 401, "unauthorized", "Bearer")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    for header in ("Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer   ", ADMIN_TOKEN):
        refused = await admin.anon.request(
            method, path, json=body, headers={"Authorization": header}
        )
        assert_refused(refused, 401, "unauthorized")
    for token in ("wrong", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1], ADMIN_TOKEN.upper(), "é"):
        raw = f"Bearer {token}".encode()  # bytes: a non-ASCII token too
        wrong = await admin.anon.request(method, path, json=body, headers={b"Authorization": raw})
        assert_refused(wrong, 403, "forbidden")
        assert "WWW-Authenticate" not in wrong.headers
    allowed = await admin.api.request(method, path, json=body)
    assert allowed.status_code not in (401, 403), allowed.text
    lower = await admin.anon.request(
        method, path, json=body, headers={"Authorization": f"bearer {ADMIN_TOKEN}"}
    )
    assert lower.status_code == allowed.status_code  # the scheme is case-insensitive


async def test_auth_is_checked_before_validation(admin: Admin) -> None:
    # Without the token, even a broken request learns nothing but "authenticate".
    broken = await admin.anon.post(
        "/api/send-message", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_refused(broken, 401, "unauthorized")
    wrong = await admin.anon.get("/api/chats?limit=-1", headers={"Authorization": "Bearer no"})
    assert_refused(wrong, 403, "forbidden")
    assert (await admin.api.get("/api/chats")).status_code == 200


def test_the_router_refuses_an_empty_token_or_no_numbers(admin: Admin) -> None:
    def build(token: str, numbers: list[str]) -> None:
        create_admin_router(
            admin_token=token, store=admin.store, outbox_for=lambda _: admin.outbox,
            phone_number_ids=numbers,
        )  # fmt: skip

    for token in ("", " padded "):
        with pytest.raises(ValueError, match="admin token"):
            build(token, [PNID])
    with pytest.raises(ValueError, match="phone_number_id"):
        build(ADMIN_TOKEN, [])


# --- send-message ---------------------------------------------------------------------------


async def test_send_message_delivers_one_text_and_shows_it_in_the_chat(admin: Admin) -> None:
    wamid = await admin.user_says("15551230001", "hello admin")
    response = await admin.send("+1 (555) 123-0001", "Hi from a human")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending" and body["created"] is True
    assert body["chat"] == f"{PNID}:15551230001" and body["to"] == "15551230001"
    assert body["outbound_id"].startswith("admin:")
    record = await admin.settled(body["outbound_id"])
    assert record.status in ("sent", "delivered", "read") and record.wamid
    assert admin.accepted_texts("15551230001") == ["Hi from a human"]
    page = (await admin.api.get(f"/api/messages/{PNID}:15551230001")).json()
    assert [(m["direction"], m["text"]) for m in page["messages"]] == [
        ("in", "hello admin"),
        ("out", "Hi from a human"),
    ]
    assert page["messages"][0]["id"] == wamid
    assert page["messages"][1]["id"] == body["outbound_id"]


async def test_the_same_idempotency_key_sends_once(admin: Admin) -> None:
    await admin.user_says("15551230002")
    first = await admin.send("15551230002", "your order shipped", idempotency_key="order-7")
    assert first.status_code == 202, first.text
    outbound_id = first.json()["outbound_id"]
    assert outbound_id == idempotent_outbound_id(PNID, "order-7")
    await admin.settled(outbound_id)
    again = [
        await admin.send("+15551230002", "your order shipped", idempotency_key="order-7")
        for _ in range(3)
    ]
    assert {r.status_code for r in again} == {202}
    assert {r.json()["outbound_id"] for r in again} == {outbound_id}
    assert all(r.json()["created"] is False for r in again)
    assert again[-1].json()["status"] != "pending"  # the first call's current status
    # Concurrent retries of a new key: one record, one send.
    racing = await asyncio.gather(
        *(admin.send("15551230002", "racing", idempotency_key="race") for _ in range(5))
    )
    assert [r.status_code for r in racing] == [202] * 5
    assert sorted(r.json()["created"] for r in racing) == [False] * 4 + [True]
    await admin.settled(idempotent_outbound_id(PNID, "race"))
    await admin.quiet()  # a wrong second send would be there once all is quiet
    assert admin.accepted_texts("15551230002") == ["your order shipped", "racing"]
    assert await admin.store.count_outbound() == 2


async def test_a_key_reused_for_another_message_is_a_conflict(admin: Admin) -> None:
    await admin.user_says("15551230003")
    first = await admin.send("15551230003", "first text", idempotency_key="k1")
    assert first.status_code == 202, first.text
    other_text = await admin.send("15551230003", "other text", idempotency_key="k1")
    assert_refused(other_text, 409, "idempotency_conflict", "idempotency_key")
    await admin.user_says("15551230004")
    other_user = await admin.send("15551230004", "first text", idempotency_key="k1")
    assert_refused(other_user, 409, "idempotency_conflict")
    await admin.settled(first.json()["outbound_id"])
    assert admin.accepted_texts("15551230003") == ["first text"]
    assert admin.accepted_texts("15551230004") == []
    assert await admin.store.count_outbound() == 1


async def test_an_accepted_send_is_durable_even_when_the_outbox_is_down(admin: Admin) -> None:
    await admin.user_says("15551230009")
    await admin.outbox.close()  # e.g. the outbox actor is restarting
    response = await admin.send("15551230009", "kept for later", phone_number_id=PNID)
    assert response.status_code == 202, response.text  # recorded: the 202 is a promise
    outbound_id = response.json()["outbound_id"]
    record = await admin.store.get_outbound(outbound_id)
    assert record is not None and record.status == "pending"
    assert admin.accepted_texts("15551230009") == []
    graph = GraphClient(admin.control, GRAPH_TOKEN, PNID, base_url="http://emulator")
    # A restarted outbox waits the grace for a status before it sends what it finds pending.
    restarted = Outbox(PNID, graph, admin.store, now=admin.clock.now, ambiguous_grace_s=0.5)
    async with restarted:
        assert await restarted.resume_pending() == 1  # what an outbox does when it starts
        await admin.settled(outbound_id)
    assert admin.accepted_texts("15551230009") == ["kept for later"]


async def test_outside_the_window_the_send_is_refused_and_nothing_recorded(admin: Admin) -> None:
    never = await admin.send("15551230005", "hello?")
    assert_refused(never, 409, "outside_window", "never written", "template")
    await admin.user_says("15551230006", "ok")
    admin.clock.advance(DAY + 60)  # the whole deployment's clock: store, outbox, emulator
    closed = await admin.send("15551230006", "too late")
    assert_refused(closed, 409, "outside_window", "last wrote 24.0 h ago")
    assert await admin.store.count_outbound() == 0
    assert admin.emulator.outbound() == []
    chats = (await admin.api.get("/api/chats")).json()["chats"]
    assert [(c["user"], c["window_open"]) for c in chats] == [("15551230006", False)]
    await admin.user_says("15551230006", "back again")  # reopens it
    reopened = await admin.send("15551230006", "welcome back")
    assert reopened.status_code == 202, reopened.text


async def test_a_phone_number_reaches_the_chat_keyed_by_the_users_bsuid(admin: Admin) -> None:
    bsuid = "US.13491208655302741918"
    await admin.user_says(bsuid, "I have a username", **{"from": "15551230007"})
    chat = f"{PNID}:{bsuid}"
    assert await admin.store.get_chat(chat) is not None
    response = await admin.send("+1 555 123 0007", "found you")
    assert response.status_code == 202, response.text
    assert response.json()["chat"] == chat and response.json()["to"] == bsuid
    await admin.settled(response.json()["outbound_id"])
    assert admin.accepted_texts(bsuid) == ["found you"]
    by_phone = (await admin.api.get("/api/messages/15551230007")).json()
    assert by_phone["chat"] == chat and len(by_phone["messages"]) == 2


BAD_SENDS: list[tuple[dict[str, Any], str, list[str]]] = [
    ({"to": "15551230008", "text": ""}, "text", ["body field 'text'", "empty"]),
    ({"to": "15551230008", "text": "  \n "}, "text", ["empty"]),
    ({"to": "15551230008", "text": "x" * 4097}, "text", ["4096", "4097"]),
    ({"to": "15551230008"}, "text", ["body field 'text'", "required"]),
    ({"text": "hi"}, "to", ["body field 'to'", "required"]),
    (
        {"to": "not-a-number", "text": "hi"},
        "to",
        ["body field 'to'", "'not-a-number' is neither"],
    ),
    ({"to": "1234", "text": "hi"}, "to", ["phone number"]),
    ({"to": 15551230008, "text": "hi"}, "to", ["body field 'to'"]),
    (
        {"to": "15551230008", "text": "hi", "phone_number_id": "999"},
        "phone_number_id",
        ["body field 'phone_number_id'", "'999'", PNID],
    ),
    (
        {"to": "15551230008", "text": "hi", "phone_number_id": ""},
        "phone_number_id",
        ["unknown business number ''"],
    ),
    (
        {"to": "15551230008", "text": "hi", "idempotency_key": "has space"},
        "idempotency_key",
        ["printable ASCII"],
    ),
    (
        {"to": "15551230008", "text": "hi", "idempotency_key": "k" * 129},
        "idempotency_key",
        ["128"],
    ),
    ({"to": "15551230008", "text": "hi", "txt": "typo"}, "txt", ["body field 'txt'"]),
]


async def test_a_bad_send_is_a_422_naming_the_field_and_changes_nothing(admin: Admin) -> None:
    await admin.user_says("15551230008")  # an open window: only the body is wrong
    for body, field, words in BAD_SENDS:
        response = await admin.api.post("/api/send-message", json=body)
        assert_refused(response, 422, "invalid_request", *words)
        assert [d["loc"] for d in response.json()["detail"]] == [["body", field]], body
    assert await admin.store.count_outbound() == 0
    assert admin.emulator.outbound() == []


async def test_a_body_that_is_not_a_json_object_is_a_readable_422(admin: Admin) -> None:
    cases: list[dict[str, Any]] = [
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        {"content": b"to=1&text=hi", "headers": {"Content-Type": "text/plain"}},
        {"json": ["to", "text"]},
        {},
    ]
    for case in cases:
        response = await admin.api.post("/api/send-message", **case)
        assert_refused(response, 422, "invalid_request", "request body")
    assert await admin.store.count_outbound() == 0


# --- messages -------------------------------------------------------------------------------


async def test_messages_are_paged_oldest_first_with_a_cursor(admin: Admin) -> None:
    user = "15551230010"
    for i in range(7):
        await admin.user_says(user, f"m{i}")
    seen: list[str] = []
    url: str | None = f"/api/messages/{PNID}%3A{user}?limit=3"  # the key URL-encoded
    pages = 0
    while url is not None:
        response = await admin.api.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["chat"] == f"{PNID}:{user}"
        seqs = [m["seq"] for m in page["messages"]]
        assert seqs == sorted(seqs)  # oldest first within a page
        seen = [m["text"] for m in page["messages"]] + seen
        cursor = page["next_before"]
        url = None if cursor is None else f"/api/messages/{PNID}:{user}?limit=3&before={cursor}"
        pages += 1
    assert seen == [f"m{i}" for i in range(7)] and pages == 3
    exact = (await admin.api.get(f"/api/messages/{user}?limit=7")).json()  # bare user
    assert len(exact["messages"]) == 7 and exact["next_before"] is None


async def test_unknown_and_malformed_chats(admin: Admin) -> None:
    unknown = await admin.api.get(f"/api/messages/{PNID}:15559999999")
    assert_refused(unknown, 404, "not_found", f"{PNID}:15559999999")
    assert_refused(await admin.api.get("/api/messages/US.1"), 404, "not_found")
    for chat in (f"{PNID}:", ":15551230011", "%20"):
        bad = await admin.api.get(f"/api/messages/{chat}")
        assert_refused(bad, 422, "invalid_request", "path parameter 'chat'")


BAD_MESSAGE_QUERIES = [
    ("limit=0", ["query parameter 'limit'", "greater than or equal to 1"]),
    ("limit=501", ["query parameter 'limit'", "500"]),
    ("limit=ten", ["query parameter 'limit'", "integer"]),
    ("before=0", ["query parameter 'before'"]),
    ("before=x", ["query parameter 'before'"]),
]


async def test_bad_message_queries_are_readable_422s(admin: Admin) -> None:
    await admin.user_says("15551230012")
    for query, words in BAD_MESSAGE_QUERIES:
        response = await admin.api.get(f"/api/messages/15551230012?{query}")
        assert_refused(response, 422, "invalid_request", *words)


# --- chats and contacts ---------------------------------------------------------------------


async def test_chats_are_listed_newest_first_a_page_at_a_time(admin: Admin) -> None:
    users = [f"155512301{i:02d}" for i in range(5)]
    for user in users:
        await admin.user_says(user)
        admin.clock.advance(1)  # distinct activity times
    listed: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = (await admin.api.get(f"/api/chats?limit=2&offset={offset}")).json()
        assert page["limit"] == 2 and page["offset"] == offset
        listed += [c["user"] for c in page["chats"]]
        offset = page["next_offset"]
    assert listed == users[::-1]
    first = (await admin.api.get("/api/chats?limit=1")).json()["chats"][0]
    assert first["chat"] == f"{PNID}:{users[-1]}" and first["window_open"] is True
    for query, name in (("limit=0", "limit"), ("limit=501", "limit"), ("offset=-1", "offset")):
        bad = await admin.api.get(f"/api/chats?{query}")
        assert_refused(bad, 422, "invalid_request", f"query parameter '{name}'")


async def test_contacts_are_found_by_name_or_phone(admin: Admin) -> None:
    await admin.user_says("15551230020", profile_name="Ana Lima")
    await admin.user_says("15551230021", profile_name="Bob Stone")
    by_name = (await admin.api.get("/api/contacts/search", params={"q": "ana"})).json()
    assert by_name["q"] == "ana"
    assert [c["profile_name"] for c in by_name["contacts"]] == ["Ana Lima"]
    assert by_name["contacts"][0]["chat"] == f"{PNID}:15551230020"
    by_phone = (await admin.api.get("/api/contacts/search", params={"q": "+1 555-123-0021"})).json()
    assert [c["profile_name"] for c in by_phone["contacts"]] == ["Bob Stone"]
    both = (await admin.api.get("/api/contacts/search", params={"q": "5551230", "limit": 1})).json()
    assert len(both["contacts"]) == 1
    nobody = (await admin.api.get("/api/contacts/search", params={"q": "zed"})).json()
    assert nobody["contacts"] == []


BAD_SEARCHES: list[tuple[dict[str, Any], list[str]]] = [
    ({}, ["query parameter 'q'", "required"]),
    ({"q": ""}, ["query parameter 'q'", "at least 1"]),
    ({"q": "   "}, ["query parameter 'q'", "spaces"]),
    ({"q": "a" * 101}, ["query parameter 'q'", "100"]),
    ({"q": "ana", "limit": 101}, ["query parameter 'limit'"]),
]


async def test_bad_contact_searches_are_readable_422s(admin: Admin) -> None:
    for params, words in BAD_SEARCHES:
        response = await admin.api.get("/api/contacts/search", params=params)
        assert_refused(response, 422, "invalid_request", *words)


# --- dead letters ---------------------------------------------------------------------------


async def _dead_letter(admin: Admin, user: str, text: str) -> str:
    """A send Meta refuses for good (131026): the outbox dead-letters it. Its dead-letter id."""
    faults = {"recipient_errors": {user: {"code": 131026}}}
    assert (await admin.control.post("/emulator/faults", json=faults)).status_code == 200
    response = await admin.send(user, text)
    assert response.status_code == 202, response.text
    record = await admin.settled(response.json()["outbound_id"])
    assert record.status == "dead"
    assert (await admin.control.delete("/emulator/faults")).status_code == 200
    [letter] = [
        dl
        for dl in (await admin.api.get("/api/dead-letters")).json()["dead_letters"]
        if dl["outbound_id"] == record.outbound_id
    ]
    return str(letter["dead_letter_id"])


async def test_a_dead_letter_replayed_twice_is_delivered_once(admin: Admin) -> None:
    user = "15551230030"
    await admin.user_says(user)
    dead_letter_id = await _dead_letter(admin, user, "second chance")
    [letter] = (await admin.api.get("/api/dead-letters")).json()["dead_letters"]
    assert letter["reason"].startswith("permanent_error") and letter["error_code"] == 131026
    assert letter["message"]["text"] == "second chance" and letter["message"]["status"] == "dead"
    assert letter["replayed_at"] is None
    assert admin.accepted_texts(user) == []

    first = await admin.api.post(f"/api/dead-letters/{dead_letter_id}/replay")
    assert first.status_code == 202, first.text
    replay = first.json()
    assert replay["status"] in ("sent", "delivered", "read") and replay["wamid"]
    assert replay["text"] == "second chance" and replay["outbound_id"] != letter["outbound_id"]
    second = await admin.api.post(f"/api/dead-letters/{dead_letter_id}/replay")
    assert second.status_code == 202, second.text
    assert second.json()["outbound_id"] == replay["outbound_id"]
    assert second.json()["wamid"] == replay["wamid"]
    assert admin.accepted_texts(user) == ["second chance"]  # delivered once

    assert (await admin.api.get("/api/dead-letters")).json()["dead_letters"] == []
    everything = await admin.api.get("/api/dead-letters", params={"include_replayed": "true"})
    [replayed] = everything.json()["dead_letters"]
    assert replayed["replay_outbound_id"] == replay["outbound_id"]
    assert replayed["replayed_at"] is not None


async def test_dead_letters_are_paged_and_unknown_ones_are_404(admin: Admin) -> None:
    user = "15551230031"
    await admin.user_says(user)
    ids = [await _dead_letter(admin, user, f"lost {i}") for i in range(3)]
    listed: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = (await admin.api.get(f"/api/dead-letters?limit=2&offset={offset}")).json()
        listed += [dl["dead_letter_id"] for dl in page["dead_letters"]]
        offset = page["next_offset"]
    assert sorted(listed) == sorted(ids)
    missing = await admin.api.post("/api/dead-letters/dl_unknown/replay")
    assert_refused(missing, 404, "not_found", "dl_unknown")
    for query, name in (
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
        ("include_replayed=maybe", "include_replayed"),
    ):
        bad = await admin.api.get(f"/api/dead-letters?{query}")
        assert_refused(bad, 422, "invalid_request", f"query parameter '{name}'")
    assert admin.accepted_texts(user) == []  # nothing here sent anything


# --- OpenAPI --------------------------------------------------------------------------------


async def test_the_openapi_document_lists_every_route_with_a_summary(admin: Admin) -> None:
    response = await admin.anon.get("/openapi.json")  # the app's document, no token needed
    assert response.status_code == 200
    document = response.json()
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert sorted(operations) == sorted(
        [
            ("POST", "/api/send-message"),
            ("GET", "/api/messages/{chat}"),
            ("GET", "/api/chats"),
            ("GET", "/api/chats/{chat}/turns"),
            ("GET", "/api/contacts/search"),
            ("GET", "/api/dead-letters"),
            ("POST", "/api/dead-letters/{dead_letter_id}/replay"),
            ("GET", "/api/quarantine"),
            ("GET", "/api/quarantine/{quarantine_id}"),
            ("GET", "/api/status"),
            ("GET", "/api/analytics/summary"),
            ("GET", "/api/analytics/daily"),
            ("GET", "/api/analytics/export/{table}"),
        ]
    )
    for key, operation in operations.items():
        assert operation["summary"], key
        assert operation["security"] == [{"AdminToken": []}], key
        assert {"401", "403", "422"} <= set(operation["responses"]), key
    assert document["components"]["securitySchemes"]["AdminToken"]["scheme"] == "bearer"
    send = operations[("POST", "/api/send-message")]
    assert set(send["responses"]) >= {"202", "409"}
    schema = document["components"]["schemas"]["SendMessageRequest"]
    assert schema["required"] == ["to", "text"]
