"""The outbox's lanes: one per recipient, so that sends to one user go out in order.

`recipient_key` names a recipient's lane (and its pair rate limit) whatever the phone format.
"""

from __future__ import annotations

import asyncio
import re

from whatsray.whatsapp.messages import is_bsuid

__all__ = ["Lane", "recipient_key"]

_PHONE_NOISE = re.compile(r"[^\d]")


def recipient_key(to: str) -> str:
    """One key per user whatever the phone format ("+1 555-..." and "1555..." are the same)."""
    return to if is_bsuid(to) else _PHONE_NOISE.sub("", to) or to


class Lane:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()  # FIFO: submits to one recipient go out in arrival order
        self.users = 0
