"""What the inbox hands back: append outcomes, stream entries (decoded or poison), and its errors.

All frozen and free of live clients, so that they pickle across Ray processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from whatsray.whatsapp.events import Event

__all__ = [
    "AppendOutcome",
    "AppendResult",
    "ClaimBatch",
    "InboxEntry",
    "InboxError",
    "InboxLayoutMismatch",
    "InboxUnavailable",
    "UnresolvedEntry",
]


class InboxError(Exception):
    """The inbox refused or failed an operation (a bug or a misconfiguration, not an outage)."""


class InboxUnavailable(InboxError):
    """Redis cannot be reached or cannot take writes now (down, loading, out of memory, a replica).

    Nothing was stored by the call that raised it. The ingress answers 503, so Meta retries.
    """

    is_transient = True  # whatsray.retries


class InboxLayoutMismatch(InboxError):
    """The inbox in Redis was laid out with another number of partitions.

    Changing the partition count moves chats to other partitions, which would split a chat's
    order across two streams: drain the inbox first (see docs/inbox.md).
    """


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """What became of one appended event."""

    index: int  # its position in the sequence given to `append`
    idempotency_key: str
    partition: int
    entry_id: str  # the stream entry: the new one, or for a duplicate the one first stored
    duplicate: bool


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The outcome of one `append` call, one item per event, in the order given."""

    outcomes: tuple[AppendOutcome, ...]

    @property
    def new(self) -> tuple[AppendOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.duplicate)

    @property
    def duplicates(self) -> tuple[AppendOutcome, ...]:
        return tuple(o for o in self.outcomes if o.duplicate)


@dataclass(frozen=True, slots=True)
class PartitionBacklog:
    """How far behind one partition's SessionHost is (`Inbox.backlog`)."""

    partition: int
    lag: int  # entries not yet read by the group
    pending: int  # read and not acked yet
    oldest_pending_s: float  # age of the oldest of those (0 when none)


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One stream entry, read through the consumer group.

    A poison entry (`event is None`, `poison` says why) could not be decoded: it keeps its raw
    fields so that the host can log it and ack it instead of reading it again forever.
    """

    partition: int
    entry_id: str
    event: Event | None
    delivery_count: int | None = None  # how often the group has delivered it, this time included
    poison: str | None = None
    raw: Mapping[str, str] = field(default_factory=dict)  # only kept for poison entries

    @property
    def is_poison(self) -> bool:
        return self.event is None


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    """A page of `claim_stale`: entries taken over from idle consumers.

    Call again with `next_start_id` until `done`. `deleted_ids` were pending but are gone from
    the stream (trimmed by `maxlen`); Redis has dropped them from the pending list.
    """

    entries: tuple[InboxEntry, ...]
    next_start_id: str
    deleted_ids: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.next_start_id == "0-0"


@dataclass(frozen=True, slots=True)
class UnresolvedEntry:
    """An inbox entry without an outcome yet (`Inbox.unresolved`): delivered to the group and
    never acked (`pending`), or appended after the group's last delivered entry and not read yet
    (`undelivered`). `kind` is the event's kind, or "poison" for an entry that does not decode
    (`poison` says why; `event_id` and `chat` are then None)."""

    partition: int
    entry_id: str
    state: Literal["pending", "undelivered"]
    age_s: float  # from the entry id's milliseconds
    deliveries: int | None = None  # how often the group delivered it (pending only)
    kind: str | None = None
    event_id: str | None = None  # the event's idempotency key (a message's wamid)
    chat: str | None = None
    poison: str | None = None
