"""The 24-hour customer service window.

A business may send free-form messages to a user only within 24 hours of the user's last
inbound message; outside it (or if the user never wrote) only templates are allowed, and Meta
answers 131047. The outbox checks this itself so it never spends a send on a certain refusal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "WINDOW_SECONDS",
    "WindowLookup",
    "describe_window",
    "is_template_body",
    "window_left",
    "window_open",
]

WINDOW_SECONDS = 24 * 60 * 60

# `window_lookup(chat_or_to)` -> the user's last inbound time (unix seconds), None if never.
WindowLookup = Callable[[str], Awaitable[float | None]]


def window_open(last_inbound_at: float | None, now: float, length: float = WINDOW_SECONDS) -> bool:
    """True while a free-form message may be sent: the user wrote less than `length` s ago."""
    return last_inbound_at is not None and now - last_inbound_at < length


def is_template_body(body: dict[str, Any]) -> bool:
    """Templates are the only messages allowed outside the window."""
    return body.get("type") == "template"


def window_left(last_inbound_at: float | None, now: float, length: float = WINDOW_SECONDS) -> float:
    """Seconds until the window closes (0 when it is closed or never opened)."""
    if last_inbound_at is None:
        return 0.0
    return max(0.0, last_inbound_at + length - now)


def describe_window(last_inbound_at: float | None, now: float) -> str:
    """One line for an agent's prompt: how long free text can still reach the user."""
    left = window_left(last_inbound_at, now)
    if left <= 0:
        return (
            "The user's 24-hour WhatsApp window is closed: only approved templates can reach"
            " them until they write again."
        )
    minutes = int(left // 60)
    hours, minutes = divmod(minutes, 60)
    span = f"{hours} h {minutes} min" if hours else f"{max(minutes, 1)} min"
    return f"The user's 24-hour WhatsApp window closes in {span}."
