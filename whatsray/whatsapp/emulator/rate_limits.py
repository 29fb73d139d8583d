"""Meta's send limits as token buckets on the emulator clock.

- Throughput (130429): one bucket per business number, its own `throughput_mps` tokens refilled
  per second (Meta gives every number its own tier).
- Pair rate (131056): one bucket per (business number, recipient), 45 tokens refilling one per 6 s,
  so a burst borrows future quota the way Meta describes. Other recipients are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    def __init__(self, capacity: float, refill_per_second: float, now: float) -> None:
        self.capacity = capacity
        self.refill_per_second = refill_per_second
        self._tokens = capacity
        self._updated = now

    def tokens(self, now: float) -> float:
        elapsed = max(0.0, now - self._updated)
        return min(self.capacity, self._tokens + elapsed * self.refill_per_second)

    def try_take(self, now: float) -> bool:
        """Take one token if there is one. A refusal costs nothing."""
        tokens = self.tokens(now)
        self._updated = max(self._updated, now)
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


class SendLimits:
    """The throughput and pair-rate buckets for every number the emulator serves."""

    def __init__(
        self,
        now: Callable[[], float],
        *,
        throughput_mps: Callable[[str], float],
        pair_burst: int,
        pair_refill_seconds: float,
    ) -> None:
        """`throughput_mps(phone_number_id)`: that number's messages per second."""
        self._now = now
        self._throughput_mps = throughput_mps
        self._pair_burst = pair_burst
        self._pair_refill = 1.0 / pair_refill_seconds
        self._throughput: dict[str, TokenBucket] = {}
        self._pairs: dict[tuple[str, str], TokenBucket] = {}

    def take_throughput(self, phone_number_id: str) -> bool:
        now = self._now()
        bucket = self._throughput.get(phone_number_id)
        if bucket is None:
            mps = self._throughput_mps(phone_number_id)
            bucket = TokenBucket(mps, mps, now)
            self._throughput[phone_number_id] = bucket
        return bucket.try_take(now)

    def take_pair(self, phone_number_id: str, recipient: str) -> bool:
        now = self._now()
        key = (phone_number_id, recipient)
        bucket = self._pairs.get(key)
        if bucket is None:
            bucket = TokenBucket(self._pair_burst, self._pair_refill, now)
            self._pairs[key] = bucket
        return bucket.try_take(now)

    def clear(self) -> None:
        self._throughput.clear()
        self._pairs.clear()
