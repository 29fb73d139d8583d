"""The inbox: P Redis streams, one per partition, each consumed by one session host's group.

The ingress calls `append` (dedupe + XADD in one Lua script, one round trip per POST). A session
host calls, on (re)start, `ensure_group`, then `read_pending` (delivered to it, never acked),
then `claim_stale` (stuck with dead consumers), then `read_new` in a loop, and `ack` each entry
once its turn is stored. See docs/inbox.md for the key layout and the reasons.

The account of unresolved entries (`unresolved`, `unresolved_summary`) is mixed in from
`account.py`; Redis's errors become the inbox's in `redis_errors.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from whatsray.inbox.account import UNRESOLVED_CAP, InboxAccount
from whatsray.inbox.account_scripts import REPLAY_SCRIPT, REPLAY_SCRIPT_SHA
from whatsray.inbox.append_script import APPEND_SCRIPT, APPEND_SCRIPT_SHA
from whatsray.inbox.entries import EVENTS, decode_entry, stream_entries, text_of
from whatsray.inbox.partitioning import partition_of_event
from whatsray.inbox.persistence import RedisPersistence, read_persistence
from whatsray.inbox.redis_errors import translated_errors
from whatsray.inbox.values import (
    AppendOutcome,
    AppendResult,
    ClaimBatch,
    InboxEntry,
    InboxLayoutMismatch,
    PartitionBacklog,
)
from whatsray.whatsapp.events import Event

__all__ = ["DEFAULT_GROUP", "DEFAULT_STREAM_PREFIX", "MIN_DEDUPE_TTL_S", "UNRESOLVED_CAP", "Inbox"]

log = logging.getLogger(__name__)

DEFAULT_STREAM_PREFIX = "whatsray:inbox"
DEFAULT_GROUP = "session-hosts"
MIN_DEDUPE_TTL_S = 7 * 24 * 3600
"""Meta redelivers a webhook for up to 7 days: a shorter dedupe memory would let one through."""
DEFAULT_MAX_CONNECTIONS = 64
"""Connections of one `Inbox.from_url` client: an ingress replica's concurrent appends, or a
session host's blocking read plus its acks and metrics."""

_T = TypeVar("_T")


class Inbox(InboxAccount):
    """A partitioned, idempotent, durable inbox over Redis Streams.

    The Redis client is injected (and closed by its owner), except with `from_url`, where the
    inbox owns the client it builds and `close()` closes it.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        partitions: int,
        stream_prefix: str = DEFAULT_STREAM_PREFIX,
        group: str = DEFAULT_GROUP,
        dedupe_ttl_s: int = MIN_DEDUPE_TTL_S,
        maxlen: int | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        if dedupe_ttl_s < MIN_DEDUPE_TTL_S:
            raise ValueError(
                f"dedupe_ttl_s must be at least {MIN_DEDUPE_TTL_S} (7 days, Meta's redelivery "
                f"horizon), got {dedupe_ttl_s}"
            )
        if maxlen is not None and maxlen < 1:
            raise ValueError(f"maxlen must be None (no trimming) or at least 1, got {maxlen}")
        if not stream_prefix or not group:
            raise ValueError("stream_prefix and group must be non-empty")
        self._redis = redis
        self._owns_client = False
        self.partitions = partitions
        self.stream_prefix = stream_prefix
        self.group = group
        self.dedupe_ttl_s = dedupe_ttl_s
        self.maxlen = maxlen

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        partitions: int,
        socket_timeout_s: float = 10.0,
        connect_timeout_s: float = 2.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout_s: float = 2.0,
        **options: Any,
    ) -> Inbox:
        """An inbox over a client it builds and owns (closed by `close()`).

        Few, quick retries: when Redis is down the ingress should answer 503 within a second or
        so, not after the client's default ten backoffs. Retrying a script is safe: the dedupe
        key makes a second run a no-op.

        The pool is bounded and blocking: beyond `max_connections` calls at once, a call waits
        for a free connection, up to `pool_timeout_s`, then fails as `InboxUnavailable` (503).
        redis-py's default pool fails at once past its limit instead, which turned a backlog
        into a cascade of 503s.
        """
        if max_connections < 1 or pool_timeout_s <= 0:
            raise ValueError("max_connections must be >= 1 and pool_timeout_s > 0")
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout_s,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
            health_check_interval=30,
        )
        client = aioredis.Redis.from_pool(pool)  # the client owns the pool: closes it too
        inbox = cls(client, partitions=partitions, **options)
        inbox._owns_client = True
        return inbox

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- keys ---------------------------------------------------------------------------------

    def stream_key(self, partition: int) -> str:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition must be in 0..{self.partitions - 1}, got {partition}")
        return f"{self.stream_prefix}:stream:{partition}"

    def dedupe_key(self, idempotency_key: str) -> str:
        return f"{self.stream_prefix}:dedupe:{idempotency_key}"

    @property
    def layout_key(self) -> str:
        return f"{self.stream_prefix}:partitions"

    # -- the ingress side ---------------------------------------------------------------------

    async def append(self, events: Sequence[Event]) -> AppendResult:
        """Dedupe and append `events`, all in one script call (one round trip, all or nothing).

        Raises `InboxUnavailable` when Redis cannot take the write: then nothing was stored.
        """
        if not events:
            return AppendResult(outcomes=())
        partitions = [partition_of_event(event, self.partitions) for event in events]
        keys: list[str] = []
        args: list[str | bytes | int] = [self.dedupe_ttl_s, self.maxlen or 0]
        for event, partition in zip(events, partitions, strict=True):
            keys += [self.dedupe_key(event.idempotency_key), self.stream_key(partition)]
            args.append(EVENTS.dump_json(event))
        with translated_errors("append"):
            reply = await self._run_append_script(keys, args)
        entry_ids = [entry_id for _, entry_id in reply]
        duplicates = [int(flag) == 0 for flag, _ in reply]
        return _appended(events, partitions, entry_ids, duplicates)

    async def append_replay(self, events: Sequence[Event]) -> AppendResult:
        """Append `events` again, without the dedupe check: a replay of events the dedupe keys
        have already seen (a quarantined item). One script call, all or nothing; every outcome
        is new (`duplicate=False`). Raises `InboxUnavailable` when Redis cannot take the write:
        then nothing was stored."""
        if not events:
            return AppendResult(outcomes=())
        partitions = [partition_of_event(event, self.partitions) for event in events]
        keys = [self.stream_key(partition) for partition in partitions]
        args: list[str | bytes | int] = [self.maxlen or 0]
        args += [EVENTS.dump_json(event) for event in events]
        with translated_errors("append_replay"):
            reply = await self._run_script(REPLAY_SCRIPT, REPLAY_SCRIPT_SHA, keys, args)
        return _appended(events, partitions, reply, [False] * len(events))

    async def _run_append_script(self, keys: list[str], args: list[str | bytes | int]) -> Any:
        try:
            return await self._redis.evalsha(APPEND_SCRIPT_SHA, len(keys), *keys, *args)
        except NoScriptError:
            # The script cache is empty after a restart or a SCRIPT FLUSH: EVAL loads it again.
            log.info("append script not cached in Redis: sending it with EVAL")
            return await self._redis.eval(APPEND_SCRIPT, len(keys), *keys, *args)

    # -- the session host side: one partition, one consumer group -----------------------------

    async def ensure_group(self, partition: int) -> None:
        """Create the partition's stream and consumer group if missing (idempotent).

        The group starts at id 0, not `$`: entries appended before the first host started
        (the ingress runs first) are delivered too.
        """
        with translated_errors("ensure_group"):
            try:
                await self._redis.xgroup_create(
                    self.stream_key(partition), self.group, id="0", mkstream=True
                )
            except ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

    async def ensure_groups(self) -> None:
        for partition in range(self.partitions):
            await self.ensure_group(partition)

    async def read_pending(
        self, partition: int, consumer: str, count: int = 100, after: str = "0"
    ) -> tuple[InboxEntry, ...]:
        """Entries delivered to `consumer` and never acked, oldest first, from after `after`.

        What a restarted host reads first. To page, pass the last entry id seen as `after`.
        """
        reply = await self._group_call(
            partition,
            "read_pending",
            lambda: self._redis.xreadgroup(
                self.group, consumer, {self.stream_key(partition): after}, count=count
            ),
        )
        entries = stream_entries(reply)
        counts = await self._delivery_counts(partition, consumer, entries)
        return tuple(
            decode_entry(partition, entry_id, fields, counts.get(text_of(entry_id)))
            for entry_id, fields in entries
        )

    async def claim_stale(
        self,
        partition: int,
        consumer: str,
        min_idle_ms: int,
        count: int = 100,
        start_id: str = "0-0",
    ) -> ClaimBatch:
        """Take over entries pending with other consumers for at least `min_idle_ms` (XAUTOCLAIM).

        The claimed entries move to `consumer`'s pending list; process and ack them like new ones.
        """
        reply = await self._group_call(
            partition,
            "claim_stale",
            lambda: self._redis.xautoclaim(
                self.stream_key(partition),
                self.group,
                consumer,
                min_idle_time=min_idle_ms,
                start_id=start_id,
                count=count,
            ),
        )
        next_start_id, raw_entries = text_of(reply[0]), reply[1]
        deleted = tuple(text_of(i) for i in reply[2]) if len(reply) > 2 else ()
        if deleted:
            log.error(
                "partition %d: %d pending entries were trimmed before being processed: %s",
                partition,
                len(deleted),
                ", ".join(deleted[:10]),
            )
        entries = [(i, f) for i, f in raw_entries if i is not None]
        counts = await self._delivery_counts(partition, consumer, entries)
        return ClaimBatch(
            entries=tuple(
                decode_entry(partition, entry_id, fields, counts.get(text_of(entry_id)))
                for entry_id, fields in entries
            ),
            next_start_id=next_start_id,
            deleted_ids=deleted,
        )

    async def read_new(
        self, partition: int, consumer: str, count: int = 100, block_ms: int | None = None
    ) -> tuple[InboxEntry, ...]:
        """Entries never delivered to any consumer of the group (XREADGROUP `>`).

        `block_ms` waits that long for one to arrive (None: return at once). It must stay below
        the client's socket timeout, or the wait would read as a dead connection.
        """
        timeout = self._redis.connection_pool.connection_kwargs.get("socket_timeout")
        if block_ms is not None and timeout is not None and block_ms >= timeout * 1000:
            raise ValueError(
                f"block_ms={block_ms} must be below the client's socket_timeout ({timeout} s)"
            )
        reply = await self._group_call(
            partition,
            "read_new",
            lambda: self._redis.xreadgroup(
                self.group,
                consumer,
                {self.stream_key(partition): ">"},
                count=count,
                block=block_ms,
            ),
        )
        return tuple(
            decode_entry(partition, entry_id, fields, 1)
            for entry_id, fields in stream_entries(reply)
        )

    async def ack(self, partition: int, entry_ids: Sequence[str]) -> int:
        """Acknowledge entries (XACK): they leave the pending list. Returns how many were pending.

        The entries stay in the stream (the log is kept; `maxlen` trims it).
        """
        if not entry_ids:
            return 0
        with translated_errors("ack"):
            acked = await self._redis.xack(self.stream_key(partition), self.group, *entry_ids)
        return int(acked)

    # -- readiness, metrics, layout -----------------------------------------------------------

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def persistence(self) -> RedisPersistence:
        """Whether Redis keeps acknowledged appends across a restart (`persistence.py`)."""
        return await read_persistence(self._redis)

    async def pending_count(self, partition: int) -> int:
        """Entries delivered to the group and not acked yet (0 when the group does not exist)."""
        with translated_errors("pending_count"):
            try:
                summary = await self._redis.xpending(self.stream_key(partition), self.group)
            except ResponseError as exc:
                if str(exc).startswith("NOGROUP"):
                    return 0
                raise
        return int(summary["pending"])

    async def unfinished(self, partition: int) -> int:
        """Entries of the partition not done yet: delivered and not acked, plus those the group
        has not read (its lag). 0 means the partition is quiet."""
        with translated_errors("unfinished"):
            try:
                groups = await self._redis.xinfo_groups(self.stream_key(partition))
            except ResponseError as exc:
                if str(exc).startswith("ERR no such key"):
                    return 0
                raise
        for group in groups:
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                return int(group["pending"]) + int(group.get("lag") or 0)
        return await self.length(partition)  # no group yet: nothing was read

    async def backlog(self, partition: int, now_ms: int | None = None) -> PartitionBacklog:
        """The partition's lag, pending entries and the age of the oldest pending one: three
        cheap Redis calls (XINFO GROUPS, XPENDING, and the time), for metrics and `status`."""
        key = self.stream_key(partition)
        with translated_errors("backlog"):
            try:
                groups = await self._redis.xinfo_groups(key)
                summary = await self._redis.xpending(key, self.group)
            except ResponseError as exc:
                if "no such key" in str(exc) or str(exc).startswith("NOGROUP"):
                    return PartitionBacklog(partition, await self.length(partition), 0, 0.0)
                raise
            if now_ms is None:
                seconds, micros = await self._redis.time()
                now_ms = seconds * 1000 + micros // 1000
        ours = [g for g in groups if text_of(g["name"]) == self.group]
        lag = int(ours[0].get("lag") or 0) if ours else 0
        pending = int(summary["pending"])
        oldest = summary.get("min") if pending else None
        # A stream entry id starts with the milliseconds it was appended at.
        oldest_s = max(0.0, (now_ms - int(text_of(oldest).split("-")[0])) / 1000) if oldest else 0.0
        return PartitionBacklog(partition, lag, pending, oldest_s)

    async def length(self, partition: int) -> int:
        """Entries in the partition's stream, acked or not (until `maxlen` trims them)."""
        with translated_errors("length"):
            return int(await self._redis.xlen(self.stream_key(partition)))

    async def check_layout(self) -> None:
        """Record the partition count in Redis on first use; raise if it was another.

        Call at startup: a changed count would route a chat to another partition mid-stream.
        """
        with translated_errors("check_layout"):
            await self._redis.set(self.layout_key, self.partitions, nx=True)
            stored = await self._redis.get(self.layout_key)
        if stored is not None and int(stored) != self.partitions:
            raise InboxLayoutMismatch(
                f"the inbox at {self.stream_prefix!r} has {int(stored)} partitions, this app is "
                f"configured with {self.partitions}: drain it first, or keep {int(stored)}"
            )

    # -- helpers ------------------------------------------------------------------------------

    async def _run_script(
        self, script: str, sha: str, keys: Sequence[str], args: Sequence[str | bytes | int]
    ) -> Any:
        try:
            return await self._redis.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:  # not cached (a restart, a SCRIPT FLUSH): EVAL loads it again
            return await self._redis.eval(script, len(keys), *keys, *args)

    async def _group_call(
        self, partition: int, action: str, call: Callable[[], Awaitable[_T]]
    ) -> _T:
        """Run a group read; if the group is gone (a wiped Redis), create it and run it again."""
        with translated_errors(action):
            try:
                return await call()
            except ResponseError as exc:
                if not str(exc).startswith("NOGROUP"):
                    raise
            log.warning("partition %d: consumer group missing, creating it", partition)
            await self.ensure_group(partition)
            return await call()

    async def _delivery_counts(
        self, partition: int, consumer: str, entries: Sequence[tuple[Any, Any]]
    ) -> dict[str, int]:
        """How often each entry was delivered (XPENDING): only on the restart paths."""
        if not entries:
            return {}
        with translated_errors("delivery_counts"):
            details = await self._redis.xpending_range(
                self.stream_key(partition),
                self.group,
                min=entries[0][0],
                max=entries[-1][0],
                count=len(entries),
                consumername=consumer,
            )
        return {text_of(d["message_id"]): int(d["times_delivered"]) for d in details}


def _appended(
    events: Sequence[Event],
    partitions: Sequence[int],
    entry_ids: Sequence[Any],
    duplicates: Sequence[bool],
) -> AppendResult:
    """What `append` and `append_replay` answer: per event, where it went and whether it was
    seen before."""
    return AppendResult(
        outcomes=tuple(
            AppendOutcome(
                index=index,
                idempotency_key=event.idempotency_key,
                partition=partition,
                entry_id=text_of(entry_id),
                duplicate=duplicate,
            )
            for index, (event, partition, entry_id, duplicate) in enumerate(
                zip(events, partitions, entry_ids, duplicates, strict=True)
            )
        )
    )
