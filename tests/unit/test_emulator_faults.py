"""Injected faults: a share of 5xx, latency, held responses, and Meta codes on demand."""

from __future__ import annotations

import asyncio

import pytest
from emulator_harness import OTHER_USER, USER, emulator_harness


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
