"""The outbox: sends a business number's replies in order, within Meta's limits, exactly once.

See docs/outbox.md. Ray-free: `Outbox` is a plain async class a Ray actor wraps later.
"""

from __future__ import annotations

from whatsray.outbox.ledger import (
    DeadLetter,
    InMemoryLedger,
    OutboundItem,
    OutboundLedger,
    OutboundRecord,
    OutboundStatus,
)
from whatsray.outbox.outbox import Outbox, OutboxClosedError, recipient_key, replay_outbound_id
from whatsray.outbox.rate_limits import PairRateLimiter, SendRateLimiter, TokenBucket
from whatsray.outbox.retry import RetryPolicy, is_ambiguous
from whatsray.outbox.stats import OutboxStats
from whatsray.outbox.status import merge_status
from whatsray.outbox.window import WINDOW_SECONDS, WindowLookup, is_template_body, window_open

__all__ = [
    "WINDOW_SECONDS",
    "DeadLetter",
    "InMemoryLedger",
    "OutboundItem",
    "OutboundLedger",
    "OutboundRecord",
    "OutboundStatus",
    "Outbox",
    "OutboxClosedError",
    "OutboxStats",
    "PairRateLimiter",
    "RetryPolicy",
    "SendRateLimiter",
    "TokenBucket",
    "WindowLookup",
    "is_ambiguous",
    "is_template_body",
    "merge_status",
    "recipient_key",
    "replay_outbound_id",
    "window_open",
]
