"""Tolerant readers for values pulled out of parsed JSON.

Meta's payloads are read, never trusted: each reader returns the expected Python type or a
fallback, and never raises, whatever the JSON held.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any


def as_str(value: Any) -> str | None:
    """A string; an integer becomes its digits (ids and phones sometimes arrive as numbers)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def as_id(value: Any) -> str | None:
    """Like `as_str`, but an empty string is no id at all."""
    text = as_str(value)
    return text or None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    number: float
    if isinstance(value, int | float):
        number = float(value) if abs(value) < 1e308 else math.inf
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_timestamp(value: Any) -> datetime | None:
    """Meta's timestamps are strings of Unix seconds; ints are accepted, anything else is None."""
    seconds = as_float(value)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def content_digest(*parts: Any) -> str:
    """A stable sha256 of JSON values: the same parsed content gives the same digest.

    ASCII-escaped canonical JSON, so lone surrogates and key order cannot change or break it.
    """
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
