"""The emulator's Graph API send side: auth, validation, limits and the 24 h window."""

from __future__ import annotations

from typing import Any

import httpx
from emulator_harness import (
    AUTH,
    GRAPH,
    OTHER_USER,
    USER,
    USER_DIGITS,
    emulator_harness,
)

from whatsray.whatsapp.errors import error_from_response


def meta_error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["fbtrace_id"]
    return error


async def test_send_success_answers_like_meta_and_is_recorded() -> None:
    async with emulator_harness() as h:
        await h.inbound()
        first = await h.send(biz_opaque_callback_data="order-7")
        second = await h.send()

        assert first.status_code == 200
        body = first.json()
        assert body["messaging_product"] == "whatsapp"
        assert body["contacts"] == [{"input": USER, "wa_id": USER_DIGITS}]
        wamid = body["messages"][0]["id"]
        assert wamid.startswith("wamid.")
        assert second.json()["messages"][0]["id"] != wamid

        outbound = await h.control("GET", "outbound", params={"to": USER_DIGITS})
        assert [r["wamid"] for r in outbound] == [wamid, second.json()["messages"][0]["id"]]
        assert outbound[0]["body"]["biz_opaque_callback_data"] == "order-7"
        assert outbound[0]["phone_number_id"] == h.config.phone_numbers[0].id
        assert outbound[0]["outcome"] == "accepted"
        assert outbound[0]["statuses"] == ["sent", "delivered", "read"]

        requests = await h.control("GET", "requests")
        sends = [r for r in requests if r["path"].endswith("/messages")]
        assert [r["status"] for r in sends] == [200, 200]
        assert sends[0]["body"]["text"] == {"body": "hello from the bot"}
        assert sends[0]["response"]["messages"][0]["id"] == wamid


async def test_missing_or_wrong_token_is_401_with_code_190() -> None:
    async with emulator_harness() as h:
        body = {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "x"}}
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
            response = await h.client.post(f"{GRAPH}/messages", json=body, headers=headers)
            assert response.status_code == 401
            assert meta_error(response)["code"] == 190
        assert await h.control("GET", "outbound") == []
        assert [r["status"] for r in await h.control("GET", "requests")] == [401, 401, 401]


async def test_bad_version_and_unknown_number() -> None:
    async with emulator_harness() as h:
        response = await h.client.post("/latest/106540352242922/messages", json={}, headers=AUTH)
        assert response.status_code == 400
        assert meta_error(response)["code"] == 2500

        await h.inbound()
        response = await h.client.post(
            "/v19.0/999/messages",
            json={
                "messaging_product": "whatsapp",
                "to": USER,
                "type": "text",
                "text": {"body": "x"},
            },
            headers=AUTH,
        )
        assert response.status_code == 400
        assert meta_error(response)["code"] == 100
        assert "999" in meta_error(response)["error_data"]["details"]


async def test_invalid_bodies_get_the_validators_code_and_nothing_is_sent() -> None:
    async with emulator_harness() as h:
        await h.inbound()
        too_long = await h.send(text={"body": "x" * 5000})
        missing = await h.send(text=None)
        not_json = await h.client.post(
            f"{GRAPH}/messages",
            content=b"{nope",
            headers={**AUTH, "content-type": "application/json"},
        )

        assert too_long.status_code == 400
        error = meta_error(too_long)
        assert error["code"] == 100
        assert "text.body" in error["error_data"]["details"]
        assert meta_error(missing)["code"] == 131008
        assert meta_error(not_json)["code"] == 100
        outbound = await h.control("GET", "outbound")
        assert [r["outcome"] for r in outbound] == ["rejected", "rejected"]
        await h.advance(10)
        assert h.receiver.statuses() == []


async def test_error_bodies_map_to_typed_errors() -> None:
    async with emulator_harness() as h:
        response = await h.send()  # the user never wrote: outside the window
        error = error_from_response(response.status_code, response.content)
        assert error.code == 131047
        assert type(error).__name__ == "ReEngagementError"


async def test_throughput_bucket_drains_then_recovers() -> None:
    users = [f"+1555000{i:04d}" for i in range(8)]
    async with emulator_harness(throughput_mps=5, window_enforcement=False) as h:
        codes = [(await h.send(user)).status_code for user in users[:5]]
        assert codes == [200] * 5
        refused = await h.send(users[5])
        assert refused.status_code == 400
        error = meta_error(refused)
        assert error["code"] == 130429
        assert error["message"] == "(#130429) Rate limit hit"
        assert error["error_data"]["details"] == "Cloud API message throughput has been reached."

        await h.advance(1.0)
        assert (await h.send(users[6])).status_code == 200


async def test_pair_rate_limits_one_user_and_not_another() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        codes = [(await h.send(USER)).status_code for _ in range(45)]
        assert codes == [200] * 45
        refused = await h.send(USER)
        assert refused.status_code == 400
        assert meta_error(refused)["code"] == 131056

        assert (await h.send(OTHER_USER)).status_code == 200

        await h.advance(6.0)  # one token refills every 6 s
        assert (await h.send(USER)).status_code == 200
        assert meta_error(await h.send(USER))["code"] == 131056


async def test_window_sync_mode() -> None:
    async with emulator_harness() as h:
        never_wrote = await h.send()
        assert never_wrote.status_code == 400
        assert meta_error(never_wrote)["code"] == 131047

        await h.inbound()
        assert (await h.send()).status_code == 200

        await h.advance(24 * 3600 - 1)
        assert (await h.send()).status_code == 200
        await h.advance(2)
        closed = await h.send()
        assert meta_error(closed)["code"] == 131047

        template = await h.template()
        assert template.status_code == 200
        assert template.json()["messages"][0]["message_status"] == "accepted"


async def test_window_async_mode_accepts_then_fails_by_webhook() -> None:
    async with emulator_harness(window_failure_mode="async") as h:
        response = await h.send(biz_opaque_callback_data="cb-1")
        assert response.status_code == 200
        wamid = response.json()["messages"][0]["id"]
        await h.advance(10)

        statuses = h.receiver.statuses()
        assert [s.status.value for s in statuses] == ["failed"]
        assert statuses[0].message_id == wamid
        assert statuses[0].biz_opaque_callback_data == "cb-1"
        assert [e.code for e in statuses[0].errors] == [131047]
        raw = statuses[0].raw["errors"][0]
        assert raw["title"] == "Re-engagement message"
        assert "24 hours" in raw["error_data"]["details"]


async def test_known_templates() -> None:
    async with emulator_harness(known_templates=("order_update",)) as h:
        unknown = await h.template(name="nope")
        assert unknown.status_code == 400
        assert meta_error(unknown)["code"] == 132001
        assert (await h.template(name="order_update")).status_code == 200


async def test_window_enforcement_off_allows_free_form() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        assert (await h.send()).status_code == 200


async def test_window_control_api() -> None:
    async with emulator_harness() as h:
        window = await h.control("POST", "windows", json={"user": USER, "age_seconds": 3600})
        assert window["open"] is True
        assert (await h.send()).status_code == 200

        window = await h.control("POST", "windows", json={"user": USER, "age_seconds": 90000})
        assert window["open"] is False
        assert meta_error(await h.send())["code"] == 131047

        await h.control("POST", "windows", json={"user": USER, "open": True})
        assert (await h.send()).status_code == 200
        listed = await h.control("GET", "windows")
        assert [(w["user"], w["open"]) for w in listed] == [(USER_DIGITS, True)]

        await h.control("POST", "windows", json={"user": USER, "last_inbound_at": None})
        assert meta_error(await h.send())["code"] == 131047

        bad = await h.client.post("/emulator/windows", json={"user": USER})
        assert bad.status_code == 400


async def test_mark_as_read_and_typing_indicator() -> None:
    async with emulator_harness() as h:
        wamid = (await h.inbound()).json()["wamid"]
        read = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
        ok = await h.client.post(f"{GRAPH}/messages", json=read, headers=AUTH)
        typing = await h.client.post(
            f"{GRAPH}/messages",
            json={**read, "typing_indicator": {"type": "text"}},
            headers=AUTH,
        )
        unknown = await h.client.post(
            f"{GRAPH}/messages", json={**read, "message_id": "wamid.nope"}, headers=AUTH
        )

        assert ok.json() == {"success": True}
        assert typing.json() == {"success": True}
        assert unknown.status_code == 400
        assert meta_error(unknown)["code"] == 131009
        reads = await h.control("GET", "outbound", params={"kind": "read"})
        assert [r["outcome"] for r in reads] == ["accepted", "accepted", "rejected"]
        assert await h.control("GET", "outbound") == []  # default: message sends only


async def test_username_user_by_bsuid() -> None:
    bsuid = "US.13491208655302741918"
    async with emulator_harness() as h:
        inbound = await h.inbound(**{"from": None, "user_id": bsuid})
        assert inbound.status_code == 200
        response = await h.client.post(
            f"{GRAPH}/messages",
            json={
                "messaging_product": "whatsapp",
                "recipient": bsuid,
                "type": "text",
                "text": {"body": "hi"},
            },
            headers=AUTH,
        )
        assert response.status_code == 200
        assert response.json()["contacts"] == [{"input": bsuid, "user_id": bsuid}]
        await h.advance(0)
        status = h.receiver.statuses()[0]
        assert status.recipient_user_id == bsuid


async def test_sender_cannot_be_recipient() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        own = "+" + h.config.phone_numbers[0].display_phone_number
        assert meta_error(await h.send(own))["code"] == 131021
