"""What an outbox is doing right now (`Outbox.status()`), for `GET /api/status`: live state read
from memory and the limiter, never from the store, so asking costs no I/O."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OutboxStatus"]


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    phone_number_id: str
    queue_depth: int  # recorded and not yet accepted by Meta (being sent, retried or waiting)
    oldest_pending_s: float | None  # age of the oldest of those; None when there is none
    throughput_mps: float  # the configured throughput limit
    tokens_available: float  # throughput tokens there now (0 while sends wait for one)
    pair_buckets: int  # recipients whose pair-rate bucket is tracked
    waiting_sends: int  # sends asleep on either limit now
