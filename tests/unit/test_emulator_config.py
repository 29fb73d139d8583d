"""Emulator configuration, clocks, rate-limit buckets and error bodies (the pure parts)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from whatsray.whatsapp.emulator import (
    BusinessNumber,
    EmulatorConfig,
    FakeClock,
    SystemClock,
)
from whatsray.whatsapp.emulator.meta_errors import graph_error_body, status_error
from whatsray.whatsapp.emulator.rate_limits import TokenBucket
from whatsray.whatsapp.errors import (
    PairRateLimitError,
    ReEngagementError,
    ThroughputLimitError,
    error_from_meta,
)


def test_defaults_follow_metas_limits() -> None:
    config = EmulatorConfig()
    assert config.phone_number_ids == ("106540352242922",)
    assert config.throughput_mps == 80
    assert (config.pair_burst, config.pair_refill_seconds) == (45, 6.0)
    assert config.window_seconds == 24 * 3600
    assert config.media_url_ttl_s == 300


def test_config_is_frozen_and_strict() -> None:
    config = EmulatorConfig()
    with pytest.raises(ValidationError):
        config.throughput_mps = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        EmulatorConfig(throughput_mps=0)
    with pytest.raises(ValidationError):
        EmulatorConfig(window_failure_mode="later")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        EmulatorConfig(unknown_option=1)  # type: ignore[call-arg]


def test_phone_numbers_from_strings() -> None:
    config = EmulatorConfig(phone_numbers=["111222333", "444555666:+1 555 010 0200"])  # type: ignore[arg-type]
    assert config.phone_number_ids == ("111222333", "444555666")
    assert config.phone_numbers[1].display_phone_number == "15550100200"
    assert config.phone_numbers[0].display_phone_number.startswith("1555")
    assert config.number("444555666") == config.phone_numbers[1]
    assert config.number("nope") is None
    with pytest.raises(ValidationError):
        EmulatorConfig(phone_numbers=["1", "1"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BusinessNumber.parse("abc")


def test_backoff_doubles_up_to_the_bound() -> None:
    config = EmulatorConfig(delivery_backoff_base_s=2, delivery_backoff_max_s=10)
    assert [config.backoff(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]


async def test_fake_clock_sleep_ends_when_advanced_far_enough() -> None:
    clock = FakeClock(start=100.0)
    sleeper = asyncio.create_task(clock.sleep(10))
    await asyncio.sleep(0)
    clock.advance(5)
    await asyncio.sleep(0)
    assert not sleeper.done()
    clock.advance(5)
    await asyncio.wait_for(sleeper, timeout=5)
    assert clock.now() == 110.0
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_system_clock_advance_wakes_sleepers() -> None:
    clock = SystemClock()
    before = clock.now()
    sleeper = asyncio.create_task(clock.sleep(3600))
    await asyncio.sleep(0)
    clock.advance(3600)
    await asyncio.wait_for(sleeper, timeout=5)  # an hour of emulator time, no real hour
    assert clock.now() - before >= 3600


def test_token_bucket_refuses_without_cost_and_refills() -> None:
    bucket = TokenBucket(capacity=2, refill_per_second=0.5, now=0.0)
    assert [bucket.try_take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.try_take(1.0) is False  # half a token
    assert bucket.try_take(2.0) is True
    assert bucket.tokens(1000.0) == 2  # never above capacity


@pytest.mark.parametrize(
    ("code", "cls", "status"),
    [
        (130429, ThroughputLimitError, 400),
        (131056, PairRateLimitError, 400),
        (131047, ReEngagementError, 400),
    ],
)
def test_error_bodies_read_back_as_typed_errors(code: int, cls: type, status: int) -> None:
    body = graph_error_body(code)
    assert body["error"]["message"].startswith(f"(#{code}) ")
    assert isinstance(error_from_meta(body["error"]), cls)
    assert isinstance(error_from_meta(status_error(code)), cls)
