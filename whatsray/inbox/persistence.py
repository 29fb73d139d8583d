"""Whether the inbox's Redis keeps what it acknowledged across a restart (docs/cluster.md).

The webhook answers 200 once Redis has acknowledged the append (docs/architecture.md, guarantee
1); that promise holds through a Redis restart only with the append-only file on. Locally the
embedded Valkey always has it (`embedded.py`); an external Redis or Valkey on a cluster may not,
so the ingress reads the server's persistence when it starts, logs a WARNING when it is off, and
`GET /api/status` shows it.

Two reads: `INFO persistence` (`aof_enabled`), which every Redis answers, and `CONFIG GET save`
(the RDB snapshot schedule), which managed services often refuse: then the schedule is unknown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from whatsray.inbox.redis_errors import translated_errors
from whatsray.inbox.values import InboxError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["LOST_ON_RESTART", "RedisPersistence", "read_persistence", "warn_unless_persistent"]

log = logging.getLogger(__name__)

LOST_ON_RESTART = "acknowledged messages would be lost if Redis restarts"


@dataclass(frozen=True)
class RedisPersistence:
    aof_enabled: bool
    # The RDB snapshot schedule (`save`, e.g. "3600 1 300 100"; "" = no snapshots); None when
    # the server refused `CONFIG GET` (managed Redis), so it is unknown.
    rdb_save: str | None

    @property
    def warning(self) -> str | None:
        """What is at risk, or None when the AOF is on."""
        if self.aof_enabled:
            return None
        if self.rdb_save is None:
            snapshots = "RDB snapshots unknown (CONFIG GET refused)"
        elif self.rdb_save == "":
            snapshots = "no RDB snapshots either"
        else:
            snapshots = f"only RDB snapshots (save {self.rdb_save!r}), so those since the last one"
        return (
            f"the inbox's Redis has its append-only file off (appendonly no), {snapshots}: "
            f"{LOST_ON_RESTART}; turn it on with `appendonly yes` (docs/cluster.md)"
        )


async def read_persistence(redis: aioredis.Redis) -> RedisPersistence:
    """The server's persistence. Raises `InboxUnavailable` when Redis cannot be reached and
    `InboxError` when it refuses `INFO`."""
    with translated_errors("persistence check"):
        info = await redis.info("persistence")
        try:
            config = await redis.config_get("save")
        except ResponseError:  # CONFIG disabled, renamed or denied by an ACL
            rdb_save = None
        else:
            rdb_save = _text(_value_of(config, "save"))
    return RedisPersistence(aof_enabled=_flag(info.get("aof_enabled")), rdb_save=rdb_save)


async def warn_unless_persistent(
    check: Callable[[], Awaitable[RedisPersistence]], timeout_s: float = 2.0
) -> RedisPersistence | None:
    """Run `check` (`Inbox.persistence`) and log one WARNING when the AOF is off or the check
    fails; never raises, so a start goes on (a Redis that is down is the webhook's 503)."""
    try:
        persistence = await asyncio.wait_for(check(), timeout_s)
    except (InboxError, TimeoutError) as exc:
        log.warning("could not check the inbox's Redis persistence: %s", exc or "no answer")
        return None
    if persistence.warning is not None:
        log.warning("%s", persistence.warning)
    return persistence


def _value_of(config: dict[Any, Any], name: str) -> Any:
    # Keys are str or bytes, as the client decodes responses or not.
    return config.get(name, config.get(name.encode(), ""))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flag(value: Any) -> bool:
    return _text(value).strip() == "1"
