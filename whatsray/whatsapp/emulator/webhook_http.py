"""A lean HTTP/1.1 POST over pooled keep-alive connections, for webhook delivery.

httpx costs about 1.4 ms of CPU per POST here (its pool checks every idle connection through
anyio on each request), which made the emulator, not the platform, the bottleneck of a
benchmark (benchmarks/README.md, "Emulator cost"). A webhook POST needs little: a request line,
a few headers, a body, and the status code back. This does that on asyncio streams, for plain
`http://` URLs; everything else (https, a client injected by tests) still goes through httpx.

Errors are named like httpx's (`ConnectError`, `ReadTimeout`, `RemoteProtocolError`), so a
failed attempt reads the same in the webhook log whichever client made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024
# Idle connections are not reused after this long: uvicorn closes them after 5 s, and a request
# written just as the server closes its end would be lost.
_IDLE_REUSE_S = 3.0


class ConnectError(Exception):
    """The connection could not be opened."""


class ReadTimeout(Exception):
    """No complete answer within the timeout."""


class RemoteProtocolError(Exception):
    """The server closed the connection or answered something that is not HTTP/1.x."""


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class WebhookPoster:
    """POSTs bodies and returns the status code; one pool of idle connections per host:port."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._targets: dict[str, tuple[str, int, bytes]] = {}

    @staticmethod
    def handles(url: str) -> bool:
        return url.startswith("http://")

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, time_limit: float
    ) -> int:
        host, port, head = self._target(url)
        lines = [head]
        lines.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items())
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        request = b"".join(lines) + body
        try:
            async with asyncio.timeout(time_limit):
                connection = self._reusable((host, port))
                if connection is not None:
                    try:
                        return await self._exchange((host, port), connection, request)
                    except _StaleConnection:
                        pass  # closed by the server while idle: nothing was read, send again
                try:
                    reader, writer = await asyncio.open_connection(host, port)
                except OSError as exc:
                    raise ConnectError(str(exc) or type(exc).__name__) from exc
                fresh = _Connection(reader, writer)
                try:
                    return await self._exchange((host, port), fresh, request)
                except _StaleConnection as exc:
                    raise RemoteProtocolError("server closed the connection") from exc
        except TimeoutError as exc:
            raise ReadTimeout(f"no answer within {time_limit:g} s") from exc

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    # --- internals -------------------------------------------------------------------------

    def _target(self, url: str) -> tuple[str, int, bytes]:
        found = self._targets.get(url)
        if found is None:
            parts = urlsplit(url)
            host = parts.hostname or "127.0.0.1"
            port = parts.port or 80
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            authority = host if port == 80 else f"{host}:{port}"
            head = f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1")
            found = self._targets[url] = (host, port, head)
        return found

    def _reusable(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < _IDLE_REUSE_S and not connection.reader.at_eof():
                return connection
            connection.close()
        return None

    async def _exchange(self, key: tuple[str, int], connection: _Connection, request: bytes) -> int:
        try:
            try:
                connection.writer.write(request)
                await connection.writer.drain()
            except ConnectionError as exc:  # reset before the request went out
                raise _StaleConnection from exc
            status, keep_alive = await _read_response(connection.reader)
        except BaseException:
            connection.close()
            raise
        if keep_alive:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(key, []).append(connection)
        else:
            connection.close()
        return status


class _StaleConnection(Exception):
    """The connection ended before any byte of an answer (safe to send again)."""


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one answer; returns its status code and whether the connection can be reused."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _StaleConnection from exc
        raise RemoteProtocolError("incomplete response head") from exc
    except ConnectionResetError as exc:  # closed with our request unread: nothing was handled
        raise _StaleConnection from exc
    except (asyncio.LimitOverrunError, ConnectionError) as exc:
        raise RemoteProtocolError(str(exc) or type(exc).__name__) from exc
    if len(head) > _MAX_HEAD:
        raise RemoteProtocolError("response head too large")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise RemoteProtocolError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    status = int(code)
    length: int | None = None
    chunked = False
    keep_alive = version == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == "content-length":
            length = int(value) if value.isdigit() else None
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            keep_alive = "close" not in value if keep_alive else "keep-alive" in value
    try:
        if chunked:
            await _skip_chunked(reader)
        elif length is not None:
            await reader.readexactly(length)
        elif status >= 200 and status not in (204, 304):
            await reader.read()  # no length: the body ends with the connection
            keep_alive = False
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
        raise RemoteProtocolError("the response body was cut short") from exc
    return status, keep_alive


async def _skip_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise RemoteProtocolError("bad chunk size") from exc
        if size == 0:
            await _skip_trailers(reader)
            return
        await reader.readexactly(size + 2)


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass
