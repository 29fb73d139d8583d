"""An ASGI app under uvicorn on loopback, in the test's own event loop.

`servers.serve_on_loopback` runs uvicorn in a thread with its own loop, which suits apps that
own everything they use. An app over objects that live in the test's loop (a `Store`, an
`Outbox`, the in-process emulator: asyncio locks, tasks, clients bound to that loop) must be
served from the same loop; the test then reaches it over real HTTP like any other client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import uvicorn

from tests.support.servers import free_port


class _InLoopServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the test runner keeps its signal handlers (Ctrl-C stops pytest, not just us)


@asynccontextmanager
async def serve_in_loop(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 from the running loop until the block exits; yields the URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = _InLoopServer(config)
    task = asyncio.create_task(server.serve(), name=f"uvicorn-{port}")
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError(f"server on port {port} exited before it started")
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
