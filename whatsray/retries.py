"""The one retry rule of the core (docs/errors.md): which failures are worth retrying, how long to
wait between tries, and when to give up.

Every loop that retries (a session's hooks, the inbox consumer, the status relay, the outbox's
sends, the LLM client) asks `is_transient` and waits `Backoff.delay`. We keep this small module
rather than `stamina` or `tenacity` because every caller here runs on an injected clock and sleep
(the session tests drive hours of backoff in milliseconds), takes its wait hint from the error
(`retry_after`), and decides per item, not per call site, when to stop; the libraries' decorators
own the clock and the loop, which is the part we need to own.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import httpx

__all__ = [
    "Backoff",
    "GaveUp",
    "Unavailable",
    "is_transient",
    "parse_retry_after",
    "retry_until",
]

_T = TypeVar("_T")

# Ray's failures of a process, not of the code it ran: the actor is dead, restarting or out of
# reach, and Ray brings it back. Named, not imported: the core stays free of Ray. (A RayTaskError
# is the remote code's own exception and is judged as that exception.)
_RAY_SYSTEM_ERRORS = frozenset(
    {
        "RayActorError",
        "ActorDiedError",
        "ActorUnavailableError",
        "ActorUnschedulableError",
        "GetTimeoutError",
        "NodeDiedError",
        "ObjectLostError",
        "OwnerDiedError",
        "RaySystemError",
        "WorkerCrashedError",
        "DeploymentUnavailableError",
        "BackPressureError",
    }
)


class Unavailable(Exception):
    """A dependency is out of reach for now (down, restarting, overloaded): retry later."""

    is_transient = True


class GaveUp(Exception):
    """A retried call that failed for good: `permanent` (retrying cannot help) or `deadline`
    (still failing when its deadline passed). The last error is `__cause__` and `error`."""

    def __init__(self, what: str, reason: str, error: BaseException) -> None:
        super().__init__(f"{what}: {reason} ({type(error).__name__}: {error})")
        self.what = what
        self.reason = reason
        self.error = error

    @property
    def description(self) -> str:
        """One line for a quarantine record: the error's type and message."""
        return f"{type(self.error).__name__}: {self.error}"[:2000]


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later may succeed: an outage, a timeout, a rate limit, a restarting
    actor. Anything else (a validation error, a refused request, a bug) is permanent."""
    flag = getattr(exc, "is_transient", None)
    if isinstance(flag, bool):  # WhatsAppError, LLMError, InboxError, Unavailable decide themselves
        return flag
    if isinstance(exc, ConnectionError | TimeoutError | httpx.TransportError):
        return True
    return any(cls.__name__ in _RAY_SYSTEM_ERRORS for cls in type(exc).__mro__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait after the n-th failure (1-based): `initial_s * factor ** (n - 1)`, capped at
    `max_s`, spread by +-`jitter` (a fraction) so that many items hit by the same outage do not
    retry in lockstep. A longer `retry_after` (the server's own hint) wins."""

    initial_s: float = 0.1
    factor: float = 2.0
    max_s: float = 10.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < 0 or self.factor < 1:
            raise ValueError("initial_s and max_s must be >= 0 and factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def nominal(self, failures: int) -> float:
        # The exponent is capped too: factor ** 1000 overflows long before the cap applies
        # (and a large factor can overflow even below 64).
        try:
            return min(self.max_s, self.initial_s * self.factor ** min(max(0, failures - 1), 64))
        except OverflowError:
            return self.max_s

    def delay(
        self,
        failures: int,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        wait = self.nominal(failures) * (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        if retry_after is not None and retry_after > wait:
            return retry_after
        return wait


async def retry_until(
    call: Callable[[], Awaitable[_T]],
    *,
    what: str,
    backoff: Backoff,
    deadline: float | None,
    now: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> _T:
    """`call()` until it succeeds; transient failures are retried with `backoff` until `deadline`
    (a time on the `now` clock; None: never give up). Raises `GaveUp` on a permanent failure or
    once a retry would end past the deadline. `on_retry(error, wait)` is told of each retry."""
    failures = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_transient(exc):
                raise GaveUp(what, "permanent", exc) from exc
            failures += 1
            hint = getattr(exc, "retry_after", None)
            wait = backoff.delay(failures, hint if isinstance(hint, int | float) else None)
            if deadline is not None and now() + wait > deadline:
                raise GaveUp(what, "deadline", exc) from exc
            if on_retry is not None:
                on_retry(exc, wait)
            await sleep(wait)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """The server's wait hint in seconds: `retry-after-ms` (OpenAI-style) or `Retry-After` in
    seconds. An HTTP date or a malformed value is ignored (None). Header names are matched
    without regard to case, in an `httpx.Headers` or a plain dict alike."""
    lowered = {str(name).lower(): value for name, value in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0 and seconds != float("inf"):
            return seconds
    return None
