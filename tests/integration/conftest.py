"""Shared fixtures for tests against a real Valkey: one embedded server for the whole session.

`valkey_url` is the server's URL; `redis` is a fresh asyncio client per test, on an emptied
server (FLUSHALL), so that tests do not see each other's keys. Tests that stop or kill a server
start their own `EmbeddedValkey` instead of touching this one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from whatsray.inbox import EmbeddedValkey


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey-session"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def valkey_url(valkey_server: EmbeddedValkey) -> str:
    return valkey_server.url


@pytest.fixture
async def redis(valkey_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(valkey_url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()
