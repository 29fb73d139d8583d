"""The inbox's persistence check against a real Valkey: AOF on, AOF off (with and without RDB
snapshots), `CONFIG` refused as on managed Redis, and a server that is down."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support.servers import free_port
from whatsray.inbox import EmbeddedValkey, Inbox, InboxUnavailable, read_persistence
from whatsray.inbox.persistence import LOST_ON_RESTART, warn_unless_persistent

pytestmark = pytest.mark.integration


@pytest.fixture
async def aof_off(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    async with EmbeddedValkey(tmp_path, appendonly=False) as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            yield client
        finally:
            await client.aclose()


async def test_aof_on_is_persistent_and_warns_of_nothing(redis: aioredis.Redis) -> None:
    # The session's server is an EmbeddedValkey with its defaults: AOF on, no RDB snapshots.
    persistence = await read_persistence(redis)
    assert persistence.aof_enabled is True
    assert persistence.rdb_save == ""
    assert persistence.warning is None


async def test_aof_off_without_snapshots_warns_that_acknowledged_messages_would_be_lost(
    aof_off: aioredis.Redis,
) -> None:
    persistence = await read_persistence(aof_off)
    assert persistence.aof_enabled is False
    assert persistence.rdb_save == ""
    assert persistence.warning is not None
    assert LOST_ON_RESTART in persistence.warning
    assert "no RDB snapshots" in persistence.warning


async def test_aof_off_with_snapshots_names_the_schedule(aof_off: aioredis.Redis) -> None:
    await aof_off.config_set("save", "3600 1")
    persistence = await read_persistence(aof_off)
    assert persistence.rdb_save == "3600 1"
    assert persistence.warning is not None
    assert "since the last one" in persistence.warning


async def test_aof_turned_on_at_runtime_is_seen(aof_off: aioredis.Redis) -> None:
    await aof_off.config_set("appendonly", "yes")
    assert (await read_persistence(aof_off)).aof_enabled is True


async def test_config_refused_leaves_the_snapshots_unknown(aof_off: aioredis.Redis) -> None:
    # Managed services deny CONFIG; an ACL user without it stands in for them.
    await aof_off.acl_setuser(
        "app",
        enabled=True,
        passwords=["+app-pw"],
        keys="*",
        channels="*",
        commands=["+@all", "-config"],
    )
    port = aof_off.connection_pool.connection_kwargs["port"]
    limited = aioredis.Redis(port=port, username="app", password="app-pw")
    try:
        persistence = await read_persistence(limited)
    finally:
        await limited.aclose()
    assert persistence.aof_enabled is False
    assert persistence.rdb_save is None
    assert persistence.warning is not None
    assert "unknown" in persistence.warning


async def test_the_inbox_reads_it_through_its_own_client(valkey_url: str) -> None:
    async with Inbox.from_url(valkey_url, partitions=1) as inbox:
        assert (await inbox.persistence()).aof_enabled is True


async def test_an_unreachable_redis_is_unavailable() -> None:
    async with Inbox.from_url(f"redis://127.0.0.1:{free_port()}", partitions=1) as inbox:
        with pytest.raises(InboxUnavailable, match="persistence check"):
            await inbox.persistence()


async def test_at_start_aof_off_logs_exactly_one_warning(
    aof_off: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox(aof_off, partitions=1)
    with caplog.at_level(logging.INFO, logger="whatsray.inbox.persistence"):
        await warn_unless_persistent(inbox.persistence)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert LOST_ON_RESTART in record.getMessage()


async def test_at_start_aof_on_logs_nothing(
    redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="whatsray.inbox.persistence"):
        found = await warn_unless_persistent(Inbox(redis, partitions=1).persistence)
    assert found is not None and found.aof_enabled
    assert caplog.records == []


async def test_at_start_an_unreachable_redis_is_one_warning_and_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Inbox.from_url(f"redis://127.0.0.1:{free_port()}", partitions=1) as inbox:
        with caplog.at_level(logging.INFO, logger="whatsray.inbox.persistence"):
            assert await warn_unless_persistent(inbox.persistence) is None
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "could not check" in record.getMessage()
