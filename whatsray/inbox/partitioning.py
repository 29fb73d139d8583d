"""Which inbox partition a chat belongs to.

A stable hash of the canonical chat key (`"{phone_number_id}:{user}"`): blake2b, never Python's
`hash()`, which is salted per process. Every process (the ingress replicas, the scheduler, the
session hosts) must agree on it, across restarts and Python versions, or a chat's messages would
be split over two partitions and lose their order.
"""

from __future__ import annotations

import hashlib

from whatsray.whatsapp.events import ChatKey, Event

__all__ = ["NO_CHAT_PARTITION", "partition_for", "partition_of_event"]

NO_CHAT_PARTITION = 0
"""Where events that name no chat go (`chat is None`: some `other` and `error` events)."""


def partition_for(chat: ChatKey | str, partitions: int) -> int:
    """The partition (0 .. partitions-1) of a chat, given as a `ChatKey` or its canonical string."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    digest = hashlib.blake2b(str(chat).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def partition_of_event(event: Event, partitions: int) -> int:
    """The partition of an event: its chat's (status events included), else partition 0."""
    if event.chat is None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        return NO_CHAT_PARTITION
    return partition_for(event.chat, partitions)
