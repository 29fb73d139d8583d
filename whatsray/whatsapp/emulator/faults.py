"""Injected failures (`POST /emulator/faults`): what a flaky Meta looks like, on demand.

- `error_rate` (0..1): that share of Graph API requests is answered with `error_rate_code`
  (default 131000, HTTP 500), drawn from the seeded random generator.
- `latency_s`: added to every Graph API request before it is handled.
- `timeout`: the next `count` requests are held for `seconds` (past the client's timeout). With
  `apply: true` (default) the request is handled normally and only the answer is late, the case
  where a client cannot know whether its send went through.
- `next_errors`: the next `count` message sends fail with `code`; `mode` "sync" (an error response)
  or "async" (200, then a `failed` status webhook carrying the code).
- `recipient_errors`: every send to that recipient fails the same way until cleared.
- `read_errors`: mark-as-read requests (blue ticks, the typing indicator) are answered with
  `code`, e.g. 131009 as Meta answers a message id it does not accept: the next `count` of them,
  or, without `count`, every one until cleared.
- `statuses`: Meta's status webhooks at their worst, for the sends from now on: each status is
  delivered 1 to `max_copies` times (drawn per status) and each copy arrives up to
  `shuffle_window_s` late (drawn per copy), so the statuses of one message, and of messages
  sent close together, arrive duplicated and out of order. `null` turns it off.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from whatsray.whatsapp.emulator.state import user_key


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CodedFault(_Strict):
    code: int
    mode: Literal["sync", "async"] = "sync"
    details: str | None = None
    http_status: int | None = Field(default=None, ge=400, le=599)


class CountedCodedFault(CodedFault):
    count: int = Field(default=1, ge=1)


class ReadFault(_Strict):
    code: int
    details: str | None = None
    http_status: int | None = Field(default=None, ge=400, le=599)
    count: int | None = Field(default=None, ge=1)  # None: every mark-as-read until cleared


class TimeoutFault(_Strict):
    seconds: float = Field(default=30.0, gt=0)
    count: int = Field(default=1, ge=1)
    apply: bool = True


class StatusChaos(_Strict):
    max_copies: int = Field(default=3, ge=1, le=10)
    shuffle_window_s: float = Field(default=1.0, ge=0, le=60)


class FaultSpec(_Strict):
    """The body of `POST /emulator/faults`; keys present replace the current ones."""

    error_rate: float | None = Field(default=None, ge=0, le=1)
    error_rate_code: int | None = None
    latency_s: float | None = Field(default=None, ge=0)
    timeout: TimeoutFault | None = None
    next_errors: CountedCodedFault | None = None
    recipient_errors: dict[str, CodedFault] | None = None
    statuses: StatusChaos | None = None
    read_errors: ReadFault | None = None


class Faults:
    def __init__(self, seed: int | None) -> None:
        self._seed = seed
        self._random = random.Random(seed)
        self.clear()

    def reset(self) -> None:
        """Clear every fault and restart the random sequence, so a reset run replays the same."""
        self.clear()
        self._random.seed(self._seed)

    def clear(self) -> None:
        self.error_rate = 0.0
        self.error_rate_code = 131000
        self.latency_s = 0.0
        self.timeout: TimeoutFault | None = None
        self.next_errors: CountedCodedFault | None = None
        self.recipient_errors: dict[str, CodedFault] = {}
        self.statuses: StatusChaos | None = None
        self.read_errors: ReadFault | None = None

    def apply(self, spec: FaultSpec) -> None:
        if spec.error_rate is not None:
            self.error_rate = spec.error_rate
        if spec.error_rate_code is not None:
            self.error_rate_code = spec.error_rate_code
        if spec.latency_s is not None:
            self.latency_s = spec.latency_s
        if "timeout" in spec.model_fields_set:
            self.timeout = spec.timeout
        if "next_errors" in spec.model_fields_set:
            self.next_errors = spec.next_errors
        if spec.recipient_errors is not None:
            self.recipient_errors.update({user_key(k): v for k, v in spec.recipient_errors.items()})
        if "statuses" in spec.model_fields_set:
            self.statuses = spec.statuses
        if "read_errors" in spec.model_fields_set:
            self.read_errors = spec.read_errors

    def describe(self) -> dict[str, object]:
        return {
            "error_rate": self.error_rate,
            "error_rate_code": self.error_rate_code,
            "latency_s": self.latency_s,
            "timeout": self.timeout.model_dump() if self.timeout else None,
            "next_errors": self.next_errors.model_dump() if self.next_errors else None,
            "recipient_errors": {k: v.model_dump() for k, v in self.recipient_errors.items()},
            "statuses": self.statuses.model_dump() if self.statuses else None,
            "read_errors": self.read_errors.model_dump() if self.read_errors else None,
        }

    def take_random_error(self) -> int | None:
        """The code to answer this request with, if the error-rate draw says so."""
        if self.error_rate > 0 and self._random.random() < self.error_rate:
            return self.error_rate_code
        return None

    def take_timeout(self) -> TimeoutFault | None:
        fault = self.timeout
        if fault is None:
            return None
        remaining = fault.count - 1
        self.timeout = fault.model_copy(update={"count": remaining}) if remaining > 0 else None
        return fault

    def take_send_error(self, recipient: str) -> CodedFault | None:
        """A recipient fault wins (it is not consumed); else one of the next-N errors."""
        per_recipient = self.recipient_errors.get(user_key(recipient))
        if per_recipient is not None:
            return per_recipient
        fault = self.next_errors
        if fault is None:
            return None
        remaining = fault.count - 1
        self.next_errors = fault.model_copy(update={"count": remaining}) if remaining > 0 else None
        return fault

    def take_read_error(self) -> ReadFault | None:
        """The error to answer this mark-as-read with, if any (a counted one is consumed)."""
        fault = self.read_errors
        if fault is None or fault.count is None:
            return fault
        remaining = fault.count - 1
        self.read_errors = fault.model_copy(update={"count": remaining}) if remaining > 0 else None
        return fault

    def status_arrivals(self, delay: float) -> list[float]:
        """When each copy of a status due after `delay` arrives: one copy at `delay`, unless the
        `statuses` fault asks for copies and shuffling (seeded draws)."""
        chaos = self.statuses
        if chaos is None:
            return [delay]
        copies = self._random.randint(1, chaos.max_copies)
        return [delay + self._random.uniform(0, chaos.shuffle_window_s) for _ in range(copies)]

    def draw(self) -> float:
        """A draw from the seeded generator (shared with duplicate/reorder decisions)."""
        return self._random.random()
