"""How long to wait before retrying a transient send failure.

Exponential backoff with jitter: attempt n (1-based: the wait after the n-th failed attempt) waits
`min(max_delay_s, base_s * factor ** (n - 1))` scaled by a random factor in `[1 - jitter,
1 + jitter]`, so with the defaults 2 s, 4 s, 8 s, 16 s ... capped at 60 s. A `retry_after` the error
carries (Retry-After header, or the error class's default) wins when it is longer. The formula is
the core's one (`whatsray.retries.Backoff`); this policy adds the attempt limit the ledger counts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import httpx

from whatsray.retries import Backoff
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
    backoff: Backoff = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_s < 0 or self.max_delay_s < 0 or self.factor < 1:
            raise ValueError("base_s and max_delay_s must be >= 0 and factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        backoff = Backoff(
            initial_s=self.base_s, factor=self.factor, max_s=self.max_delay_s, jitter=self.jitter
        )
        object.__setattr__(self, "backoff", backoff)  # frozen: set once, here

    def should_retry(self, attempts_made: int) -> bool:
        return attempts_made < self.max_attempts

    def nominal_delay(self, attempt: int) -> float:
        """The wait after the `attempt`-th failed attempt, before jitter."""
        return self.backoff.nominal(attempt)

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """The wait after the `attempt`-th failed attempt, jittered; never less than retry_after."""
        return self.backoff.delay(attempt, retry_after, rng)


def is_ambiguous(exc: WhatsAppError) -> bool:
    """True when the failed request may nevertheless have reached Meta and been sent.

    Timeouts and connections dropped mid-request are; a connection never made is not, and an
    error body from Meta is a definite refusal.
    """
    if not isinstance(exc, TransportError):
        return False
    never_connected = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
    return not isinstance(exc.__cause__, never_connected)
