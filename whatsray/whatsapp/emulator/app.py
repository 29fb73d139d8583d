"""The emulator as an ASGI app (Starlette), and a blocking runner for the CLI.

`create_emulator_app` is the single entry point for all three uses: in-process through
`httpx.ASGITransport`, on loopback under uvicorn, and standalone from `whatsray emulator`. The
`Emulator` is on `app.state.emulator`. ASGITransport sends no lifespan events, so in-process
users start it themselves (`async with app.state.emulator:`); under uvicorn the lifespan does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from whatsray.whatsapp.emulator.clock import Clock
from whatsray.whatsapp.emulator.config import EmulatorConfig
from whatsray.whatsapp.emulator.control_api import ControlApi
from whatsray.whatsapp.emulator.core import Emulator
from whatsray.whatsapp.emulator.graph_api import GraphApi


def create_emulator_app(
    config: EmulatorConfig,
    *,
    clock: Clock | None = None,
    http: httpx.AsyncClient | None = None,
) -> Starlette:
    emulator = Emulator(config, clock=clock, http=http)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with emulator:
            yield

    # Control routes first: `/emulator/x` would otherwise match the Graph `/{version}/{id}`.
    routes = [
        Mount("/emulator", routes=ControlApi(emulator).routes()),
        *GraphApi(emulator).routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.emulator = emulator
    return app


def run_emulator(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8025) -> None:
    """Serve the emulator until interrupted (blocking)."""
    app = create_emulator_app(config)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
