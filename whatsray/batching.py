"""Group calls: many callers' items go to a collaborator in one call (docs/hot-path.md).

A `Batcher` is the client-side twin of the store's group commit: callers `submit` one item each
and await its result; the batcher hands everything queued to `flush` in one call, with at most one
call in flight. Items that arrive while a call is in flight wait for the next one, so a busy
batcher sends big batches and an idle one sends each item at once. Under load it also lingers a
few milliseconds before a call, so that one call carries many chats' turns.

`flush(items)` returns one result per item, in order: a value, or an exception for that item
alone. If `flush` itself raises, every item of that call gets the exception (the caller retries
its own item, as it would a direct call).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from whatsray.observability.logs import clear_ids

__all__ = ["Batcher"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        name: str,
        linger_s: float = 0.005,
        max_items: int = 500,
    ) -> None:
        if linger_s < 0 or max_items < 1:
            raise ValueError("need linger_s >= 0 and max_items >= 1")
        self._flush = flush
        self.name = name
        self._linger_s = linger_s
        self._max_items = max_items
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._last_batch = 0
        self.calls = 0  # flush calls made
        self.items = 0  # items flushed

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """Items queued or a call in flight."""
        return bool(self._queue) or self._runner is not None

    async def submit(self, item: T) -> R:
        # Shielded: a caller cancelled mid-flush must not cancel the other callers' call.
        return await asyncio.shield(self.enqueue(item))

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue `item` without waiting; its future resolves after the call that carries it."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # nobody may await it: its error is logged by flush
        self._queue.append((item, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"batcher-{self.name}")
        return future

    async def close(self) -> None:
        """Wait for the queued items to be flushed."""
        while self._runner is not None:
            await asyncio.shield(self._runner)

    async def _run(self) -> None:
        clear_ids()  # it flushes every caller's items: not the log ids of the one that started it
        try:
            while self._queue:
                if self._linger_s and (self._last_batch > 1 or len(self._queue) > 1):
                    await asyncio.sleep(self._linger_s)  # busy: let the batch fill
                batch = self._queue[: self._max_items]
                del self._queue[: self._max_items]
                self._last_batch = len(batch)
                await self._call(batch)
        finally:
            self._runner = None

    async def _call(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.calls += 1
        self.items += len(batch)
        try:
            results = await self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} items")
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
