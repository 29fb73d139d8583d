"""The 24-hour customer service window.

A business may send free-form messages to a user only within 24 hours of the user's last
inbound message; outside it (or if the user never wrote) only templates are allowed, and Meta
answers 131047. The outbox checks this itself so it never spends a send on a certain refusal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["WINDOW_SECONDS", "WindowLookup", "is_template_body", "window_open"]

WINDOW_SECONDS = 24 * 60 * 60

# `window_lookup(chat_or_to)` -> the user's last inbound time (unix seconds), None if never.
WindowLookup = Callable[[str], Awaitable[float | None]]


def window_open(last_inbound_at: float | None, now: float, length: float = WINDOW_SECONDS) -> bool:
    """True while a free-form message may be sent: the user wrote less than `length` s ago."""
    return last_inbound_at is not None and now - last_inbound_at < length


def is_template_body(body: dict[str, Any]) -> bool:
    """Templates are the only messages allowed outside the window."""
    return body.get("type") == "template"
