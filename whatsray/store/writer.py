"""Group commit: one thread owns the DuckDB connection and applies writes in batches.

DuckDB allows one writing process and its calls block, so they never run on an event loop. A
write is a `WriteKind` (what to do) and a parameter (to what), handed to the writer thread
through a queue; the caller gets a `concurrent.futures.Future` (await it with
`asyncio.wrap_future`).

The thread takes the first queued write and everything queued behind it; while writes arrive
together it keeps collecting for up to `batch_interval_s` (a lone write on an idle store goes at
once); then it applies the batch (at most `max_batch` writes) in one transaction. Every future
resolves only after the COMMIT that contains its write: a resolved write is durable.

Writes of one kind in a batch are applied together by one call of the kind's `apply` (DuckDB
plans every statement afresh, about a millisecond each: one statement over 500 rows costs little
more than one over a single row). Writes in one batch were all submitted before any of them
resolved, so none can depend on another: the batch may be applied kind by kind (by `rank`), in
arrival order within a kind. A caller that needs an order awaits the first write.

If anything in the batch fails, the batch is rolled back and its writes are retried one
transaction each, so only the bad write fails. `apply` therefore must be safe to run again
against the rolled-back database (SQL only, no side effects outside the connection).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Generic, TypeVar

import duckdb

from whatsray.store.errors import StoreClosedError, StoreError, StoreWriteError

__all__ = ["SINGLE", "GroupCommitWriter", "WriteKind", "WriteOp", "WriterStats"]

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")
WriteOp = Callable[[duckdb.DuckDBPyConnection], R]


@dataclass(frozen=True, eq=False, slots=True)
class WriteKind(Generic[P, R]):
    """A kind of write: `apply(conn, params)` returns one result per parameter, in order.

    `apply` must give each parameter the result it would get if the parameters were applied one
    after another in that order (duplicates included). Kinds are applied by ascending `rank`.
    """

    name: str
    rank: int
    apply: Callable[[duckdb.DuckDBPyConnection, Sequence[P]], list[R]]


def _run_each(conn: duckdb.DuckDBPyConnection, ops: Sequence[WriteOp[Any]]) -> list[Any]:
    return [op(conn) for op in ops]


SINGLE: WriteKind[WriteOp[Any], Any] = WriteKind("single", 1000, _run_each)
"""Any function of the connection, applied on its own (after the bulk kinds of its batch)."""


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters since start: for tests (group commit really groups) and metrics."""

    writes: int = 0  # writes applied (committed or failed)
    commits: int = 0  # successful COMMITs
    batches: int = 0  # batches taken from the queue
    failed_writes: int = 0
    isolated_batches: int = 0  # batches rolled back and retried write by write
    largest_batch: int = 0


@dataclass(slots=True)
class _Pending:
    kind: WriteKind[Any, Any]
    param: Any
    future: Future[Any]


@dataclass(slots=True)
class _Stop:
    before_close: Callable[[duckdb.DuckDBPyConnection], None] | None
    future: Future[None]


def _as_store_error(exc: Exception) -> Exception:
    # DuckDB's exceptions do not always pickle cleanly across Ray; ours are message-only.
    if isinstance(exc, duckdb.Error):
        return StoreWriteError(f"{type(exc).__name__}: {exc}")
    return exc


class GroupCommitWriter:
    """The thread that owns the connection. `start()` once, `submit()` writes, `stop()` once."""

    def __init__(
        self,
        connect: Callable[[], duckdb.DuckDBPyConnection],
        *,
        on_open: Callable[[duckdb.DuckDBPyConnection], Any] | None = None,
        batch_interval_s: float = 0.005,
        max_batch: int = 500,
        name: str = "whatsray-store-writer",
    ) -> None:
        if batch_interval_s < 0:
            raise ValueError("batch_interval_s must be >= 0")
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._connect = connect
        self._on_open = on_open
        self._interval = batch_interval_s
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.SimpleQueue[_Pending | list[_Pending] | _Stop] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._accepting = False
        self._thread: threading.Thread | None = None
        self._started: Future[Any] = Future()
        self._counts = {field: 0 for field in WriterStats.__slots__}
        self._last_batch = 0

    @property
    def stats(self) -> WriterStats:
        return WriterStats(**self._counts)

    @property
    def alive(self) -> bool:
        """Started, not stopping, and the thread is running."""
        thread = self._thread
        return self._accepting and thread is not None and thread.is_alive()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> Future[Any]:
        """Open the connection on the writer thread; resolves with what `on_open` returned."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the writer was already started")
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._accepting = True
        self._thread.start()
        return self._started

    def submit(self, kind: WriteKind[P, R], param: P) -> Future[R]:
        """Queue a write; its future resolves after the COMMIT that contains it."""
        future: Future[R] = Future()
        with self._lock:
            if not self._accepting:
                raise StoreClosedError("the store is not open for writes")
            self._queue.put(_Pending(kind, param, future))
        return future

    def submit_many(self, kind: WriteKind[P, R], params: Sequence[P]) -> list[Future[R]]:
        """Queue writes that go into one batch together (one transaction, unless one fails)."""
        bundle = [_Pending(kind, param, Future()) for param in params]
        with self._lock:
            if not self._accepting:
                raise StoreClosedError("the store is not open for writes")
            self._queue.put(bundle)
        return [pending.future for pending in bundle]

    def submit_op(self, op: WriteOp[R]) -> Future[R]:
        """Queue a function of the connection (the `SINGLE` kind)."""
        return self.submit(SINGLE, op)

    def stop(
        self, before_close: Callable[[duckdb.DuckDBPyConnection], None] | None = None
    ) -> Future[None]:
        """Refuse new writes, apply every queued one, run `before_close`, close the connection."""
        future: Future[None] = Future()
        with self._lock:
            if self._thread is None or not self._accepting:
                future.set_result(None)
                return future
            self._accepting = False
            self._queue.put(_Stop(before_close, future))
        return future

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        conn: duckdb.DuckDBPyConnection | None = None
        try:
            conn = self._connect()
            opened = self._on_open(conn) if self._on_open is not None else None
        except BaseException as exc:
            if conn is not None:
                conn.close()
            with self._lock:
                self._accepting = False
            self._started.set_exception(exc)
            self._fail_queued(StoreClosedError(f"the store failed to open: {exc}"))
            return
        self._started.set_result(opened)
        stop: _Stop | None = None
        try:
            while stop is None:
                batch: list[_Pending] = []
                stop = self._collect(batch)
                if batch:
                    self._apply(conn, batch)
        except BaseException as exc:  # a bug in the writer itself: fail loudly, hang nobody
            log.exception("store writer thread crashed")
            with self._lock:
                self._accepting = False
            self._fail_queued(StoreClosedError(f"the store writer crashed: {exc}"))
            conn.close()
            raise
        try:
            if stop.before_close is not None:
                stop.before_close(conn)
        finally:
            conn.close()
            stop.future.set_result(None)

    def _collect(self, batch: list[_Pending]) -> _Stop | None:
        """Fill `batch`; returns the stop request, if one came.

        What is already queued joins at once. The writer lingers up to `batch_interval_s` for
        more only when writes are arriving together (this batch or the last one holds more than
        one): a lone write on an idle store is not kept waiting for company that won't come.
        """
        item = self._queue.get()
        if isinstance(item, _Stop):
            return item
        _add(batch, item)
        stop = self._take(batch, None)
        if stop is None and (len(batch) > 1 or self._last_batch > 1) and self._interval > 0:
            stop = self._take(batch, time.monotonic() + self._interval)
        self._last_batch = len(batch)
        return stop

    def _take(self, batch: list[_Pending], deadline: float | None) -> _Stop | None:
        """Move queued writes into `batch` until it is full, or the queue is empty (no
        deadline), or the deadline passes."""
        while len(batch) < self._max_batch:
            remaining = 0.0 if deadline is None else deadline - time.monotonic()
            try:
                if remaining > 0:
                    item = self._queue.get(timeout=remaining)
                else:
                    item = self._queue.get_nowait()
            except queue.Empty:
                return None
            if isinstance(item, _Stop):
                return item
            _add(batch, item)
        return None

    def _apply(self, conn: duckdb.DuckDBPyConnection, batch: list[_Pending]) -> None:
        # A caller that gave up before its write started is dropped, not applied.
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]
        self._counts["batches"] += 1
        self._counts["largest_batch"] = max(self._counts["largest_batch"], len(live))
        if not live:
            return
        live.sort(key=lambda p: p.kind.rank)  # stable: arrival order within a kind
        try:
            conn.execute("BEGIN TRANSACTION")
            results: list[Any] = []
            for _, group in groupby(live, key=lambda p: p.kind):
                pendings = list(group)
                results.extend(_apply_kind(conn, pendings[0].kind, [p.param for p in pendings]))
            conn.execute("COMMIT")
        except Exception:
            _rollback(conn)
            if len(live) > 1:
                self._counts["isolated_batches"] += 1
            for pending in live:
                self._apply_alone(conn, pending)
            return
        self._counts["commits"] += 1
        self._counts["writes"] += len(live)
        for pending, result in zip(live, results, strict=True):
            pending.future.set_result(result)

    def _apply_alone(self, conn: duckdb.DuckDBPyConnection, pending: _Pending) -> None:
        self._counts["writes"] += 1
        try:
            conn.execute("BEGIN TRANSACTION")
            (result,) = _apply_kind(conn, pending.kind, [pending.param])
            conn.execute("COMMIT")
        except Exception as exc:
            _rollback(conn)
            self._counts["failed_writes"] += 1
            if not isinstance(exc, StoreError):
                log.warning("store write failed: %s: %s", type(exc).__name__, exc)
            pending.future.set_exception(_as_store_error(exc))
            return
        self._counts["commits"] += 1
        pending.future.set_result(result)

    def _fail_queued(self, exc: Exception) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Stop):
                item.future.set_result(None)
                continue
            for pending in item if isinstance(item, list) else [item]:
                if pending.future.set_running_or_notify_cancel():
                    pending.future.set_exception(exc)


def _add(batch: list[_Pending], item: _Pending | list[_Pending]) -> None:
    if isinstance(item, list):
        batch.extend(item)  # a bundle stays whole, even past max_batch
    else:
        batch.append(item)


def _apply_kind(
    conn: duckdb.DuckDBPyConnection, kind: WriteKind[Any, Any], params: list[Any]
) -> list[Any]:
    results = kind.apply(conn, params)
    if len(results) != len(params):
        raise RuntimeError(f"{kind.name}: {len(results)} results for {len(params)} writes")
    return results


def _rollback(conn: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # no transaction open: BEGIN itself failed
        conn.execute("ROLLBACK")
