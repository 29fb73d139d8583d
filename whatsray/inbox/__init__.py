"""The durable inbox: partitioned Redis Streams with atomic dedupe, and an embedded Valkey.

See docs/inbox.md.
"""

from __future__ import annotations

from whatsray.inbox.embedded import EmbeddedValkey
from whatsray.inbox.partitioning import NO_CHAT_PARTITION, partition_for, partition_of_event
from whatsray.inbox.persistence import RedisPersistence, read_persistence
from whatsray.inbox.streams import (
    DEFAULT_GROUP,
    DEFAULT_STREAM_PREFIX,
    MIN_DEDUPE_TTL_S,
    UNRESOLVED_CAP,
    Inbox,
)
from whatsray.inbox.values import (
    AppendOutcome,
    AppendResult,
    ClaimBatch,
    InboxEntry,
    InboxError,
    InboxLayoutMismatch,
    InboxUnavailable,
    PartitionBacklog,
    UnresolvedEntry,
)

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_STREAM_PREFIX",
    "MIN_DEDUPE_TTL_S",
    "NO_CHAT_PARTITION",
    "UNRESOLVED_CAP",
    "AppendOutcome",
    "AppendResult",
    "ClaimBatch",
    "EmbeddedValkey",
    "Inbox",
    "InboxEntry",
    "InboxError",
    "InboxLayoutMismatch",
    "InboxUnavailable",
    "PartitionBacklog",
    "RedisPersistence",
    "UnresolvedEntry",
    "partition_for",
    "partition_of_event",
    "read_persistence",
]
