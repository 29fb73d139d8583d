"""Redis's errors as the inbox's: an outage is `InboxUnavailable` (the caller may retry later; the
ingress answers 503), any other Redis error an `InboxError`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from whatsray.inbox.values import InboxError, InboxUnavailable

__all__ = ["translated_errors"]

# An outage, not a bug: the caller may retry later (the ingress answers 503).
_UNAVAILABLE = (
    RedisConnectionError,  # also BusyLoadingError: the server is loading its AOF
    RedisTimeoutError,
    OutOfMemoryError,
    ReadOnlyError,  # a replica during a failover
    OSError,
)


@contextmanager
def translated_errors(action: str) -> Iterator[None]:
    try:
        yield
    except InboxError:
        raise
    except _UNAVAILABLE as exc:
        raise InboxUnavailable(f"inbox unavailable ({action}): {exc}") from exc
    except RedisError as exc:
        raise InboxError(f"inbox {action} failed: {exc}") from exc
