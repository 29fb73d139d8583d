"""Token buckets, the pair-rate limiter, the retry schedule and the 24 h window (fake time)."""

from __future__ import annotations

import random

import pytest

from tests.support.fake_time import FakeTime
from tests.support.metrics import MetricsProbe
from whatsray.outbox import (
    PairRateLimiter,
    RetryPolicy,
    SendRateLimiter,
    TokenBucket,
    is_template_body,
    recipient_key,
    replay_outbound_id,
    window_open,
)
from whatsray.outbox.rate_limits import SAFETY_MARGIN_S


def test_a_bucket_gives_its_burst_then_queues_reservations_in_order() -> None:
    bucket = TokenBucket(capacity=3, refill_per_s=0.5, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    waits = [bucket.reserve(0.0) for _ in range(3)]
    # One token per 2 s: the 4th waits 2 s, the 5th 4 s, the 6th 6 s (each plus the margin).
    assert waits == pytest.approx(
        [2.0 + SAFETY_MARGIN_S, 4.0 + SAFETY_MARGIN_S, 6.0 + SAFETY_MARGIN_S]
    )
    assert bucket.tokens(6.0) == pytest.approx(0.0)
    assert bucket.reserve(100.0) == 0.0  # refilled (capped at capacity)
    assert bucket.tokens(100.0) == pytest.approx(2.0)


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(capacity=0, refill_per_s=1, now=0)
    with pytest.raises(ValueError):
        TokenBucket(capacity=1, refill_per_s=0, now=0)


def test_pair_buckets_are_per_recipient_and_idle_ones_are_forgotten() -> None:
    pairs = PairRateLimiter(burst=2, refill_s=6.0, prune_every=5)
    assert pairs.reserve("a", 0.0) == pairs.reserve("a", 0.0) == 0.0
    assert pairs.reserve("a", 0.0) == pytest.approx(6.0 + SAFETY_MARGIN_S)
    assert pairs.reserve("b", 0.0) == 0.0  # another recipient is not affected
    assert len(pairs) == 2
    pairs.reserve("c", 1000.0)  # 5th reservation: prune; a and b are full again by now
    assert len(pairs) == 1


async def test_the_send_limiter_waits_for_pair_then_throughput_tokens(
    recorded: MetricsProbe,
) -> None:
    time = FakeTime(start=1000.0)
    limiter = SendRateLimiter(
        throughput_mps=2, pair_burst=2, pair_refill_s=6.0, now=time.clock, sleep=time.sleep
    )
    for user in ("a", "b"):
        await limiter.acquire(user)  # 2 throughput tokens: no wait
    assert time.sleeps == []
    await limiter.acquire("c")  # throughput empty: half a second
    assert time.sleeps == [pytest.approx(0.5 + SAFETY_MARGIN_S)]
    await limiter.acquire("a")
    await limiter.acquire("a")  # a's pair bucket (2) is spent: 6 s minus the time already passed
    waits = "whatsray_rate_limit_wait_seconds"
    assert recorded.value(f"{waits}_count", limiter="pair") == 1
    assert recorded.value(f"{waits}_count", limiter="throughput") >= 1
    assert recorded.value(f"{waits}_sum") == pytest.approx(sum(time.sleeps))


def test_retry_schedule_doubles_from_two_seconds_and_caps() -> None:
    policy = RetryPolicy(max_attempts=8, max_delay_s=30.0)
    assert [policy.nominal_delay(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.nominal_delay(10_000) == 30.0  # no overflow
    assert policy.should_retry(7) and not policy.should_retry(8)


def test_retry_jitter_stays_in_bounds_and_varies() -> None:
    policy = RetryPolicy(jitter=0.2)
    rng = random.Random(1)
    delays = [policy.delay(3, rng=rng) for _ in range(200)]
    assert all(8.0 * 0.8 <= d <= 8.0 * 1.2 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100
    assert RetryPolicy(jitter=0.0).delay(1) == 2.0


def test_a_longer_retry_after_wins() -> None:
    policy = RetryPolicy(jitter=0.0)
    assert policy.delay(1, retry_after=60.0) == 60.0
    assert policy.delay(3, retry_after=1.0) == 8.0


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base_s": -1}, {"factor": 0.5}, {"jitter": 1.0}]
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_window_is_24_hours_from_the_last_inbound_message() -> None:
    now = 1_000_000.0
    assert window_open(now - 10, now)
    assert window_open(now - 86_399, now)
    assert not window_open(now - 86_400, now)
    assert not window_open(None, now)  # never wrote
    assert is_template_body({"type": "template"})
    assert not is_template_body({"type": "text"})


def test_recipient_keys_and_replay_ids() -> None:
    assert recipient_key("+1 (555) 123-4567") == recipient_key("15551234567") == "15551234567"
    assert recipient_key("US.13491208655302741918") == "US.13491208655302741918"
    assert replay_outbound_id("t1:0", "dl7") == replay_outbound_id("t1:0", "dl7")
    assert replay_outbound_id("t1:0", "dl7") != replay_outbound_id("t1:0", "dl8")
