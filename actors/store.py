"""The Store actor: the only DuckDB writer (DuckDB allows one writing process)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from actors.proxy import Forwarder
from whatsray.store import Store

# Everything public on Store but its lifecycle, which this actor owns.
STORE_METHODS = tuple(
    name
    for name in dir(Store)
    if not name.startswith("_")
    and name not in {"start", "close"}
    and callable(getattr(Store, name))
)


class StoreActor:
    def __init__(self, path: str) -> None:
        self._store = Store(Path(path))
        self._started = asyncio.get_running_loop().create_task(self._store.start())
        self._forward = Forwarder(self._store, STORE_METHODS)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        # Shielded: a caller that gives up (a readiness probe timing out) must not cancel the start.
        await asyncio.shield(self._started)  # the file is open before the first call is served
        return await self._forward.call(method, *args, **kwargs)
