"""The emulator over real loopback HTTP with two business numbers on different throughput tiers:
each number's own limit answers 130429, as Meta does per registered number."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.servers import serve_on_loopback
from whatsray.cli.emulator import add_emulator_commands, config_from_args
from whatsray.whatsapp.emulator import (
    BusinessNumber,
    EmulatorConfig,
    FakeClock,
    create_emulator_app,
)

pytestmark = pytest.mark.integration

TOKEN = "numbers-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SLOW, FAST = "1111", "2222"  # 3 msg/s and 20 msg/s
GLOBAL_MPS = 80.0


@pytest.fixture
def emulator() -> Iterator[httpx.Client]:
    config = EmulatorConfig(
        access_token=TOKEN,
        phone_numbers=(
            BusinessNumber.parse(SLOW, throughput_mps=3),
            BusinessNumber.parse(f"{FAST}::20"),
            BusinessNumber.parse("3333"),  # no tier of its own: the config's
        ),
        throughput_mps=GLOBAL_MPS,
        window_enforcement=False,  # only the throughput is under test
    )
    # A fake clock: the buckets refill only when the test moves time, never while it sends.
    app = create_emulator_app(config, clock=FakeClock())
    with serve_on_loopback(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def send(client: httpx.Client, number: str, to: str) -> httpx.Response:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "text",
        "text": {"body": f"from {number}"},
    }
    return client.post(f"/v25.0/{number}/messages", json=body, headers=AUTH)


def codes(responses: list[httpx.Response]) -> list[int | None]:
    return [None if r.status_code == 200 else r.json()["error"]["code"] for r in responses]


def test_the_slow_number_is_refused_past_its_tier_while_the_fast_one_at_the_same_rate_is_not(
    emulator: httpx.Client,
) -> None:
    slow, fast = [], []
    for i in range(6):  # the same burst from both, interleaved, to distinct users
        slow.append(send(emulator, SLOW, f"1555000{i:04d}"))
        fast.append(send(emulator, FAST, f"1555000{i:04d}"))
    assert codes(slow) == [None, None, None, 130429, 130429, 130429]
    assert codes(fast) == [None] * 6
    refused = slow[3].json()["error"]
    assert refused["message"] == "(#130429) Rate limit hit"

    # A second later the slow number has its 3 tokens again, and only 3.
    assert emulator.post("/emulator/clock/advance", json={"seconds": 1}).status_code == 200
    again = [send(emulator, SLOW, f"1555100{i:04d}") for i in range(4)]
    assert codes(again) == [None, None, None, 130429]

    # The emulator's log says which number each refusal was for.
    outbound = emulator.get("/emulator/outbound").json()
    refusals = {(r["phone_number_id"], r["error_code"]) for r in outbound if r["error_code"]}
    assert refusals == {(SLOW, 130429)}


def test_a_number_without_a_tier_of_its_own_has_the_configs(emulator: httpx.Client) -> None:
    burst = [send(emulator, "3333", f"1555200{i:04d}") for i in range(int(GLOBAL_MPS) + 1)]
    assert codes(burst) == [None] * int(GLOBAL_MPS) + [130429]


def test_each_number_reports_its_own_tier(emulator: httpx.Client) -> None:
    levels = {
        number: emulator.get(f"/v25.0/{number}", headers=AUTH).json()["throughput"]["level"]
        for number in (SLOW, FAST, "3333")
    }
    assert levels == {SLOW: "STANDARD", FAST: "STANDARD", "3333": "STANDARD"}
    numbers = emulator.get("/emulator/config").json()["phone_numbers"]
    assert [(n["id"], n["throughput_mps"]) for n in numbers] == [
        (SLOW, 3.0),
        (FAST, 20.0),
        ("3333", None),
    ]


def test_an_upgraded_number_reports_high() -> None:
    config = EmulatorConfig(access_token=TOKEN, phone_numbers=(BusinessNumber.parse("4444::1000"),))
    with (
        serve_on_loopback(create_emulator_app(config)) as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        answer = client.get("/v25.0/4444", headers=AUTH).json()
    assert answer["throughput"] == {"level": "HIGH"}


def test_the_command_line_takes_a_tier_per_number() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_emulator_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["emulator", "--phone-number-id", "1111:15550001111:5", "--phone-number-id", "2222"]
    )
    config, _ = config_from_args(args)
    assert (config.throughput_of("1111"), config.throughput_of("2222")) == (5.0, 80.0)
    assert config.number("1111") == BusinessNumber(
        id="1111", display_phone_number="15550001111", throughput_mps=5
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("1111::fast", "throughput of 1111 must be messages per second"), ("1111::0", "greater")],
)
def test_a_bad_tier_is_a_clear_error(spec: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        BusinessNumber.parse(spec)
