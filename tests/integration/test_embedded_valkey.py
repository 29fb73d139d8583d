"""EmbeddedValkey: a real valkey-server subprocess whose AOF keeps the inbox across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from whatsray.inbox import EmbeddedValkey, Inbox, InboxUnavailable
from whatsray.whatsapp.events import ChatKey, MessageEvent
from whatsray.whatsapp.message_content import MessageType, TextContent

pytestmark = pytest.mark.integration


def message(wamid: str) -> MessageEvent:
    return MessageEvent(
        idempotency_key=wamid,
        chat=ChatKey(phone_number_id="123456789", user="15551230000"),
        message_id=wamid,
        type=MessageType.TEXT,
        content=TextContent(body=wamid),
    )


async def stored_ids(url: str) -> list[str]:
    async with Inbox.from_url(url, partitions=2) as inbox:
        entries: list[str] = []
        for partition in range(2):
            await inbox.ensure_group(partition)
            entries += [
                e.event.idempotency_key
                for e in await inbox.read_pending(partition, "reader", count=1000)
                + await inbox.read_new(partition, "reader", count=1000)
                if e.event is not None
            ]
        return sorted(entries)


async def test_data_survives_a_stop_and_start(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path)
    url = await server.astart()
    try:
        assert server.port != 6379
        assert url == f"redis://127.0.0.1:{server.port}"
        assert (tmp_path / "valkey").is_dir()
        async with Inbox.from_url(url, partitions=2) as inbox:
            result = await inbox.append([message("wamid.1"), message("wamid.2")])
            partition = result.outcomes[0].partition
            await inbox.ensure_group(partition)
            assert len(await inbox.read_new(partition, "host")) == 2  # delivered, never acked
        await server.astop()
        assert not server.is_running()

        assert await server.astart() == url  # the same port again: handed-out URLs stay valid
        async with Inbox.from_url(url, partitions=2) as inbox:
            pending = await inbox.read_pending(partition, "host")
            assert [e.event.idempotency_key for e in pending if e.event] == ["wamid.1", "wamid.2"]
            again = await inbox.append([message("wamid.1")])
            assert again.outcomes[0].duplicate  # the dedupe keys survived too
    finally:
        await server.astop()


async def test_an_acknowledged_append_survives_a_crash_of_the_server(tmp_path: Path) -> None:
    # appendfsync everysec: the write reached the OS before Valkey replied, so a SIGKILL
    # of the server process loses nothing that was acknowledged.
    server = EmbeddedValkey(tmp_path, appendfsync="everysec")
    url = await server.astart()
    try:
        async with Inbox.from_url(url, partitions=2) as inbox:
            await inbox.append([message(f"wamid.k{i}") for i in range(20)])
        server.kill()
        await server.astart()
        assert await stored_ids(url) == sorted(f"wamid.k{i}" for i in range(20))
    finally:
        await server.astop()


async def test_without_the_aof_a_restart_forgets(tmp_path: Path) -> None:
    # The control for the two tests above: what keeps the data is the AOF, not luck.
    server = EmbeddedValkey(tmp_path, appendonly=False)
    url = await server.astart()
    try:
        async with Inbox.from_url(url, partitions=2) as inbox:
            await inbox.append([message("wamid.volatile")])
        await server.astop()
        await server.astart()
        assert await stored_ids(url) == []
    finally:
        await server.astop()


async def test_while_the_server_is_down_appends_fail_and_nothing_is_lost(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path)
    url = await server.astart()
    try:
        async with Inbox.from_url(url, partitions=2) as inbox:
            await inbox.append([message("wamid.before")])
            await server.astop()

            with pytest.raises(InboxUnavailable):
                await inbox.append([message("wamid.during")])
            assert await inbox.ping() is False

            await server.astart()
            assert await inbox.ping() is True
            result = await inbox.append([message("wamid.during")])  # Meta's retry
            assert not result.outcomes[0].duplicate
        assert await stored_ids(url) == ["wamid.before", "wamid.during"]
    finally:
        await server.astop()


def test_sync_context_manager(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path) as server:
        assert server.is_running()
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            assert client.ping()
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        finally:
            client.close()
    assert not server.is_running()
    server.stop()  # stopping twice is harmless


async def test_async_context_manager_and_config(tmp_path: Path) -> None:
    async with EmbeddedValkey(tmp_path, appendfsync="always") as server:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        try:
            config = await client.config_get("*")
        finally:
            await client.aclose()
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "always"
        assert config["maxmemory-policy"] == "noeviction"
        assert str(config["bind"]).split() == ["127.0.0.1"]
        assert Path(str(config["dir"])) == (tmp_path / "valkey").resolve()
    assert not server.is_running()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="6379"):
        EmbeddedValkey(tmp_path, port=6379)
    with pytest.raises(ValueError, match="appendfsync"):
        EmbeddedValkey(tmp_path, appendfsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no port"):
        _ = EmbeddedValkey(tmp_path).url
