"""Local mode's stand-ins, in one actor: the embedded Valkey (the inbox) and the WhatsApp emulator.

On a cluster neither exists: `REDIS_URL` points at a real Redis and the Graph API is Meta's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import uvicorn

from actors.metrics import start_actor_metrics
from whatsray.calls import calls
from whatsray.inbox import EmbeddedValkey
from whatsray.observability.logs import LogSetup, configure_logging
from whatsray.whatsapp.emulator import EmulatorConfig, create_emulator_app


class LocalServices:
    def __init__(
        self,
        data_dir: str,
        emulator_port: int,
        emulator: EmulatorConfig,
        redis_url: str | None,
        *,
        logs: LogSetup | None = None,
    ) -> None:
        start_actor_metrics("local_services")
        configure_logging(logs)  # first: what the constructor logs is formatted and redacted
        self._valkey: EmbeddedValkey | None = None
        if redis_url is None:  # an embedded Valkey, its AOF in the data dir: survives restarts
            self._valkey = EmbeddedValkey(Path(data_dir))
            redis_url = self._valkey.start()
        self._redis_url = redis_url
        self._emulator_url = f"http://127.0.0.1:{emulator_port}"
        server = uvicorn.Server(
            uvicorn.Config(
                create_emulator_app(emulator),
                host="127.0.0.1",
                port=emulator_port,
                log_level="warning",
            )
        )
        self._server = server
        self._serving = asyncio.get_running_loop().create_task(server.serve())

    async def urls(self) -> dict[str, str]:
        return {"redis": self._redis_url, "emulator": self._emulator_url}

    async def call_counts(self) -> dict[str, int]:
        return calls.snapshot()  # none: it serves, and calls no other actor

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._serving
        if self._valkey is not None:
            self._valkey.stop()
