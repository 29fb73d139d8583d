"""Monotonic merge of outbound message statuses.

Meta sends status webhooks at least once and in any order (a `read` can overtake its `delivered`,
a `sent` can arrive before the send call returned). Every status write goes through
`merge_status`, so the stored status only ever moves forward:

    pending < sent < delivered < read (= played)      failed: final      dead: final, beats failed

"failed" wins over anything but itself and "dead"; "dead" (parked in the dead-letter queue after
failing) wins over everything. Unknown values never move the status (tolerant reader).
"""

from __future__ import annotations

import logging

__all__ = ["FINAL_STATUSES", "STATUS_RANK", "merge_status"]

log = logging.getLogger(__name__)

# Progress statuses by rank. "played" (first play of a voice message) implies it was read.
STATUS_RANK: dict[str, int] = {"pending": 0, "sent": 1, "delivered": 2, "read": 3, "played": 3}
FINAL_STATUSES: frozenset[str] = frozenset({"failed", "dead"})


def merge_status(current: str, incoming: str) -> str:
    """The status after `incoming` arrives on a record whose status is `current`."""
    incoming = "read" if incoming == "played" else incoming
    if incoming not in STATUS_RANK and incoming not in FINAL_STATUSES:
        log.info("ignoring unknown outbound status %r (current %r)", incoming, current)
        return current
    if current == "dead":
        return current
    if incoming == "dead":
        return incoming
    if current == "failed":
        return current
    if incoming == "failed":
        return incoming
    if current not in STATUS_RANK:
        # An unknown stored value: any known progress status replaces it.
        return incoming
    return incoming if STATUS_RANK[incoming] > STATUS_RANK[current] else current
