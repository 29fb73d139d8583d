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
from whatsray.outbox.outbox import (
    REPLAY_PURPOSE,
    Outbox,
    OutboxClosedError,
    recipient_key,
    replay_outbound_id,
    template_outbound_id,
)
from whatsray.outbox.rate_limits import PairRateLimiter, SendRateLimiter, TokenBucket
from whatsray.outbox.retry import RetryPolicy, is_ambiguous
from whatsray.outbox.status import merge_status
from whatsray.outbox.templates import (
    PURPOSES,
    TemplatesConfig,
    TemplatesConfigError,
    TemplateSpec,
    load_templates,
    parse_templates,
)
from whatsray.outbox.window import (
    WINDOW_SECONDS,
    WindowLookup,
    describe_window,
    is_template_body,
    window_left,
    window_open,
)

__all__ = [
    "PURPOSES",
    "REPLAY_PURPOSE",
    "WINDOW_SECONDS",
    "DeadLetter",
    "InMemoryLedger",
    "OutboundItem",
    "OutboundLedger",
    "OutboundRecord",
    "OutboundStatus",
    "Outbox",
    "OutboxClosedError",
    "PairRateLimiter",
    "RetryPolicy",
    "SendRateLimiter",
    "TemplateSpec",
    "TemplatesConfig",
    "TemplatesConfigError",
    "TokenBucket",
    "WindowLookup",
    "describe_window",
    "is_ambiguous",
    "is_template_body",
    "load_templates",
    "merge_status",
    "parse_templates",
    "recipient_key",
    "replay_outbound_id",
    "template_outbound_id",
    "window_left",
    "window_open",
]
