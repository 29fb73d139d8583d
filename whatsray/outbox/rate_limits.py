"""Meta's send limits, kept on our side so we wait for a token instead of getting an error.

- Throughput (130429): one token bucket per business number, `throughput_mps` tokens refilled
  per second (so a burst of one second's worth, then a steady rate).
- Pair rate (131056): one bucket per recipient, `pair_burst` tokens refilling one per
  `pair_refill_s` seconds (Meta: about 1 message per 6 s to one user, with a burst allowance).

Buckets hand out *reservations*: taking a token may drive the balance negative, and the caller
sleeps until its token would exist. Waiters are thus served in the order they asked, with no
polling and no thundering herd, and one recipient's wait never delays another recipient's
(the throughput bucket is taken only after the pair wait, so a queued recipient holds no
throughput token while it waits).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from whatsray import metrics

__all__ = ["PairRateLimiter", "SendRateLimiter", "TokenBucket"]

# Waits are padded by this much so that our bucket and Meta's, computing the same instant with
# different float rounding, never disagree on whether the token exists yet.
SAFETY_MARGIN_S = 0.001


class TokenBucket:
    """A token bucket on an injected time line (seconds); starts full."""

    def __init__(self, capacity: float, refill_per_s: float, now: float) -> None:
        if capacity < 1 or refill_per_s <= 0:
            raise ValueError("capacity must be >= 1 and refill_per_s > 0")
        self.capacity = capacity
        self.refill_per_s = refill_per_s
        self._tokens = float(capacity)
        self._updated = now

    def tokens(self, now: float) -> float:
        """The balance at `now` (negative while reservations are outstanding)."""
        elapsed = max(0.0, now - self._updated)
        return min(self.capacity, self._tokens + elapsed * self.refill_per_s)

    def reserve(self, now: float) -> float:
        """Take one token; return how long to wait (0.0 if it is there now) before using it."""
        tokens = self.tokens(now)
        self._updated = max(self._updated, now)
        self._tokens = tokens - 1.0
        if tokens >= 1.0:
            return 0.0
        return (1.0 - tokens) / self.refill_per_s + SAFETY_MARGIN_S

    def is_full(self, now: float) -> bool:
        return self.tokens(now) >= self.capacity


class PairRateLimiter:
    """One bucket per recipient; full (idle) buckets are dropped now and then to bound memory."""

    def __init__(self, burst: int, refill_s: float, *, prune_every: int = 1024) -> None:
        if refill_s <= 0:
            raise ValueError("refill_s must be > 0")
        self.burst = burst
        self.refill_s = refill_s
        self._buckets: dict[str, TokenBucket] = {}
        self._prune_every = prune_every
        self._since_prune = 0

    def reserve(self, recipient: str, now: float) -> float:
        bucket = self._buckets.get(recipient)
        if bucket is None:
            bucket = TokenBucket(self.burst, 1.0 / self.refill_s, now)
            self._buckets[recipient] = bucket
        wait = bucket.reserve(now)
        self._since_prune += 1
        if self._since_prune >= self._prune_every:
            self._prune(now)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        # A full bucket is the same as no bucket: forgetting it changes nothing.
        self._since_prune = 0
        self._buckets = {k: b for k, b in self._buckets.items() if not b.is_full(now)}


class SendRateLimiter:
    """Both limits for one business number: `await acquire(recipient)` before every send."""

    def __init__(
        self,
        *,
        throughput_mps: float,
        pair_burst: int,
        pair_refill_s: float,
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._now = now
        self._sleep = sleep
        self.throughput = TokenBucket(throughput_mps, throughput_mps, now())
        self.pairs = PairRateLimiter(pair_burst, pair_refill_s)
        self.waiting = 0  # sends asleep in `acquire` right now, for either limit

    async def acquire(self, recipient: str) -> float:
        """Wait until both a pair token and a throughput token are ours; returns the time waited."""
        waited = 0.0
        pair_wait = self.pairs.reserve(recipient, self._now())
        if pair_wait > 0:
            waited += pair_wait
            await self._wait(pair_wait, "pair")
        throughput_wait = self.throughput.reserve(self._now())
        if throughput_wait > 0:
            waited += throughput_wait
            await self._wait(throughput_wait, "throughput")
        return waited

    async def _wait(self, seconds: float, limiter: str) -> None:
        metrics.rate_limit_wait_seconds.observe(seconds, limiter=limiter)
        self.waiting += 1
        try:
            await self._sleep(seconds)
        finally:
            self.waiting -= 1
