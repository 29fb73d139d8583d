"""The inbox's account of its unresolved entries (docs/inbox.md, "The account of unresolved
entries"): those without an outcome for longer than a cutoff, listed for the admin API
(`unresolved`) and counted for the gauges (`unresolved_summary`).

A mixin of `Inbox` (`whatsray/inbox/streams.py`), which owns the Redis client, the keys and the
scripts; the names it needs from there are declared below for the type checker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import ResponseError

from whatsray.inbox.account_scripts import SUMMARY_SCRIPT, SUMMARY_SCRIPT_SHA
from whatsray.inbox.entries import decode_entry, text_of
from whatsray.inbox.redis_errors import translated_errors
from whatsray.inbox.values import UnresolvedEntry

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["UNRESOLVED_CAP", "InboxAccount"]

UNRESOLVED_CAP = 10_000
"""`unresolved_summary` counts at most this many entries per partition."""
_MAX_SEQ = 2**64 - 1  # the largest sequence part of a stream entry id


class InboxAccount:
    if TYPE_CHECKING:
        _redis: aioredis.Redis
        group: str

        def stream_key(self, partition: int) -> str: ...

        async def _run_script(
            self, script: str, sha: str, keys: Sequence[str], args: Sequence[str | bytes | int]
        ) -> Any: ...

    async def unresolved(
        self, partition: int, older_than_s: float, limit: int = 100, now_ms: int | None = None
    ) -> list[UnresolvedEntry]:
        """The partition's entries without an outcome for more than `older_than_s`, oldest first,
        at most `limit`: those delivered and never acked (`pending`, XPENDING), then those the
        group has not read yet (`undelivered`: after its last delivered id). Without the group
        (no host started yet) every entry of the stream is undelivered. For the admin API."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        key = self.stream_key(partition)
        with translated_errors("unresolved"):
            if now_ms is None:
                now_ms = await self._now_ms()
            cutoff = _cutoff_id(now_ms, older_than_s)
            if cutoff is None:
                return []
            try:
                groups = await self._redis.xinfo_groups(key)
            except ResponseError as exc:
                if "no such key" in str(exc):
                    return []
                raise
            ours = [g for g in groups if text_of(g["name"]) == self.group]
            pending: list[Any] = []
            start = "-"
            if ours:
                start = f"({text_of(ours[0]['last-delivered-id'])}"
                pending = await self._redis.xpending_range(
                    key, self.group, min="-", max=cutoff, count=limit
                )
            fields_of: dict[str, Any] = {}
            if pending:  # their fields, one XRANGE each, in one round trip
                pipe = self._redis.pipeline(transaction=False)
                for row in pending:
                    pipe.xrange(key, row["message_id"], row["message_id"])
                for found in await pipe.execute():
                    fields_of.update((text_of(i), f) for i, f in found)
            undelivered: list[Any] = []
            if len(pending) < limit:
                found = await self._redis.xrange(key, start, cutoff, count=limit - len(pending))
                undelivered = list(found or ())
        entries = [
            _unresolved(
                partition,
                "pending",
                text_of(row["message_id"]),
                fields_of.get(text_of(row["message_id"])),
                int(row["times_delivered"]),
                now_ms,
            )
            for row in pending
        ]
        entries += [
            _unresolved(partition, "undelivered", text_of(entry_id), fields, None, now_ms)
            for entry_id, fields in undelivered
        ]
        return entries

    async def unresolved_summary(
        self, partition: int, older_than_s: float, now_ms: int | None = None
    ) -> tuple[int, float]:
        """`(count, oldest_age_s)` for the gauges: how many of the partition's entries have had
        no outcome for more than `older_than_s` (pending or undelivered, at most
        `UNRESOLVED_CAP`), and the age of its oldest unacked entry (0 when none). One read-only
        script call that sends no entry back: cheap enough every few seconds."""
        key = self.stream_key(partition)
        with translated_errors("unresolved_summary"):
            if now_ms is None:
                now_ms = await self._now_ms()
            cutoff = _cutoff_id(now_ms, older_than_s) or "0-0"  # 0-0: no entry is that old
            count, oldest = await self._run_script(
                SUMMARY_SCRIPT, SUMMARY_SCRIPT_SHA, [key], [self.group, cutoff, UNRESOLVED_CAP]
            )
        return int(count), _age_s(text_of(oldest), now_ms) if oldest else 0.0

    async def _now_ms(self) -> int:
        """Redis's clock, which stamped the entry ids."""
        seconds, micros = await self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000


def _age_s(entry_id: str, now_ms: int) -> float:
    """An entry's age: its id starts with the milliseconds it was appended at."""
    return max(0.0, (now_ms - int(entry_id.split("-")[0])) / 1000)


def _cutoff_id(now_ms: int, older_than_s: float) -> str | None:
    """The last entry id at least `older_than_s` old (None: none can be, the clock is younger)."""
    cutoff_ms = now_ms - int(older_than_s * 1000)
    return f"{cutoff_ms}-{_MAX_SEQ}" if cutoff_ms >= 0 else None


def _unresolved(
    partition: int,
    state: Literal["pending", "undelivered"],
    entry_id: str,
    fields: Any,
    deliveries: int | None,
    now_ms: int,
) -> UnresolvedEntry:
    entry = decode_entry(partition, entry_id, fields, deliveries, quiet=True)
    event = entry.event
    return UnresolvedEntry(
        partition=partition,
        entry_id=entry_id,
        state=state,
        age_s=_age_s(entry_id, now_ms),
        deliveries=deliveries,
        kind="poison" if event is None else event.kind,
        event_id=None if event is None else event.idempotency_key,
        chat=None if event is None or event.chat is None else str(event.chat),
        poison=entry.poison,
    )
