"""Injected faults: a share of 5xx, latency, held responses, and Meta codes on demand."""

from __future__ import annotations

import asyncio

import pytest
from emulator_harness import AUTH, GRAPH, OTHER_USER, USER, emulator_harness


async def test_error_rate_one_fails_every_request_with_a_server_error() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        await h.control("POST", "faults", json={"error_rate": 1.0})
        response = await h.send()
        assert response.status_code == 500
        assert response.json()["error"]["code"] == 131000
        assert await h.control("GET", "outbound") == []

        await h.control("POST", "faults", json={"error_rate_code": 133004})
        response = await h.send()
        assert (response.status_code, response.json()["error"]["code"]) == (503, 133004)

        await h.control("DELETE", "faults")
        assert (await h.send()).status_code == 200


async def test_error_rate_share_is_seeded_and_reproducible() -> None:
    async def outcomes(seed: int) -> list[int]:
        async with emulator_harness(window_enforcement=False, seed=seed) as h:
            await h.control("POST", "faults", json={"error_rate": 0.5})
            users = [f"+1555000{i:04d}" for i in range(40)]
            return [(await h.send(user)).status_code for user in users]

    first, again = await outcomes(7), await outcomes(7)
    assert first == again
    assert set(first) == {200, 500}


async def test_latency_delays_the_answer_past_a_client_timeout() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        await h.control("POST", "faults", json={"latency_s": 5.0})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(h.send(), timeout=0.05)
        await h.control("POST", "faults", json={"latency_s": 0})
        assert (await h.send()).status_code == 200


async def test_held_request_is_applied_although_the_client_gave_up() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        await h.control("POST", "faults", json={"timeout": {"seconds": 5.0}})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(h.send(), timeout=0.05)
        # The send went through: the client cannot know, which is why ids are chosen up front.
        outbound = await h.control("GET", "outbound")
        assert [r["outcome"] for r in outbound] == ["accepted"]
        assert (await h.control("GET", "faults"))["timeout"] is None  # count was 1
        assert (await h.send()).status_code == 200


async def test_held_request_without_apply_is_not_applied() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        await h.control(
            "POST", "faults", json={"timeout": {"seconds": 0.01, "count": 2, "apply": False}}
        )
        first, second, third = [await h.send() for _ in range(3)]
        assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
        assert first.json()["error"]["code"] == 2
        assert len(await h.control("GET", "outbound")) == 1


async def test_code_for_the_next_n_sends() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        await h.control("POST", "faults", json={"next_errors": {"code": 131026, "count": 2}})
        codes = []
        for _ in range(3):
            response = await h.send()
            codes.append(response.json()["error"]["code"] if response.status_code != 200 else 200)
        assert codes == [131026, 131026, 200]
        rejected = (await h.control("GET", "outbound"))[0]
        assert rejected["outcome"] == "rejected"
        assert rejected["error_code"] == 131026


async def test_async_code_is_accepted_then_fails_by_webhook() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        await h.control("POST", "faults", json={"next_errors": {"code": 131049, "mode": "async"}})
        response = await h.send()
        assert response.status_code == 200
        await h.advance(5)
        statuses = h.receiver.statuses()
        assert [(s.status.value, [e.code for e in s.errors]) for s in statuses] == [
            ("failed", [131049])
        ]


async def test_code_for_one_recipient_only() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        await h.control(
            "POST",
            "faults",
            json={"recipient_errors": {USER: {"code": 131026, "http_status": 400}}},
        )
        assert (await h.send(USER)).json()["error"]["code"] == 131026
        assert (await h.send(USER)).json()["error"]["code"] == 131026
        assert (await h.send(OTHER_USER)).status_code == 200
        described = await h.control("GET", "faults")
        assert list(described["recipient_errors"]) == [USER.lstrip("+")]

        await h.control("POST", "reset")
        assert (await h.send(USER)).status_code == 200


async def test_bad_fault_body_is_400() -> None:
    async with emulator_harness() as h:
        for body in ({"error_rate": 2}, {"nope": 1}, {"next_errors": {"count": 1}}):
            response = await h.client.post("/emulator/faults", json=body)
            assert response.status_code == 400
            assert response.json()["error"]["details"]


async def test_status_chaos_duplicates_and_shuffles_every_status_until_turned_off() -> None:
    async with emulator_harness() as h:
        chaos = {"max_copies": 3, "shuffle_window_s": 5.0}
        assert (await h.control("POST", "faults", json={"statuses": chaos}))["statuses"] == chaos
        await h.inbound()
        for _ in range(10):
            await h.send()
        await h.advance(10)
        events = h.receiver.statuses()
        copies: dict[tuple[str, str], int] = {}
        for event in events:
            key = (str(event.message_id), event.status.value)
            copies[key] = copies.get(key, 0) + 1
        assert len(copies) == 30  # every status of every send arrived...
        assert set(copies.values()) == {1, 2, 3}  # ...1 to 3 times (seeded draws)
        order = {"sent": 0, "delivered": 1, "read": 2}
        by_message: dict[str, list[int]] = {}
        for event in events:
            by_message.setdefault(str(event.message_id), []).append(order[event.status.value])
        assert any(seen != sorted(seen) for seen in by_message.values())  # and out of order

        await h.control("POST", "faults", json={"statuses": None})
        before = len(h.receiver.statuses())
        await h.send()
        await h.advance(10)
        assert [e.status.value for e in h.receiver.statuses()[before:]] == [
            "sent",
            "delivered",
            "read",
        ]


async def test_read_errors_answer_mark_as_read_with_the_code_counted_or_until_cleared() -> None:
    async with emulator_harness() as h:
        wamid = (await h.inbound()).json()["wamid"]
        read = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}

        async def mark_read() -> tuple[int, int | None]:
            response = await h.client.post(f"{GRAPH}/messages", json=read, headers=AUTH)
            return response.status_code, response.json().get("error", {}).get("code")

        fault = {"code": 131009, "count": 2}
        described = await h.control("POST", "faults", json={"read_errors": fault})
        assert described["read_errors"]["count"] == 2
        assert [await mark_read() for _ in range(3)] == [(400, 131009), (400, 131009), (200, None)]
        assert (await h.send()).status_code == 200  # message sends are not touched

        await h.control("POST", "faults", json={"read_errors": {"code": 131009}})  # no count
        answers = [await mark_read() for _ in range(3)]
        assert answers == [(400, 131009)] * 3
        response = await h.client.post(f"{GRAPH}/messages", json=read, headers=AUTH)
        error = response.json()["error"]
        assert error["message"] == "(#131009) Parameter value is not valid"
        assert error["error_data"]["details"]
        await h.control("POST", "faults", json={"read_errors": None})
        assert await mark_read() == (200, None)

        rejected = await h.control("GET", "outbound", params={"kind": "read"})
        assert [r["error_code"] for r in rejected if r["outcome"] == "rejected"] == [131009] * 6
