"""How long to wait before retrying a transient send failure.

Exponential backoff with jitter: attempt n (1-based: the wait after the n-th failed attempt) waits
`min(max_delay_s, base_s * factor ** (n - 1))` scaled by a random factor in `[1 - jitter,
1 + jitter]`, so with the defaults 2 s, 4 s, 8 s, 16 s ... capped at 60 s. A `retry_after` the error
carries (Retry-After header, or the error class's default) wins when it is longer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from whatsray.whatsapp.errors import TransportError, WhatsAppError

__all__ = ["RetryPolicy", "is_ambiguous"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` counts every send attempt, the first one included (1 = never retry)."""

    max_attempts: int = 5
    base_s: float = 2.0
    factor: float = 2.0
    max_delay_s: float = 60.0
    jitter: float = 0.2  # +-20 %: spreads retries of many recipients hit by the same outage

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_s < 0 or self.max_delay_s < 0 or self.factor < 1:
            raise ValueError("base_s and max_delay_s must be >= 0 and factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def should_retry(self, attempts_made: int) -> bool:
        return attempts_made < self.max_attempts

    def nominal_delay(self, attempt: int) -> float:
        """The wait after the `attempt`-th failed attempt, before jitter."""
        exponent = max(0, attempt - 1)
        # Cap the exponent too: factor ** 1000 would overflow long before the cap applies.
        return min(self.max_delay_s, self.base_s * self.factor ** min(exponent, 64))

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """The wait after the `attempt`-th failed attempt, jittered; never less than retry_after."""
        nominal = self.nominal_delay(attempt)
        draw = (rng or random).uniform(1.0 - self.jitter, 1.0 + self.jitter)
        delay = nominal * draw
        if retry_after is not None and retry_after > delay:
            return retry_after
        return delay


def is_ambiguous(exc: WhatsAppError) -> bool:
    """True when the failed request may nevertheless have reached Meta and been sent.

    Timeouts and connections dropped mid-request are; a connection never made is not, and an
    error body from Meta is a definite refusal.
    """
    if not isinstance(exc, TransportError):
        return False
    never_connected = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
    return not isinstance(exc.__cause__, never_connected)
