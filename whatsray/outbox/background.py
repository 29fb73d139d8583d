"""The outbox's background sends (docs/outbox.md, "Background sends that raise", "Sweeps"):
`dispatch` (a turn's replies, recorded by the caller), the sweeps of what is pending in the
ledger, and the lanes they run in, which never raise: a delivery that raised is tried again
while the failure is transient, then left pending for the sweep, or dead-lettered for a bug.

A mixin of `Outbox` (`whatsray/outbox/outbox.py`), which owns the records, the ledger and the
sends; the names it needs from there are declared below for the type checker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from whatsray.outbox.lanes import recipient_key
from whatsray.outbox.ledger import OutboundItem, OutboundLedger, OutboundRecord
from whatsray.retries import Backoff, GaveUp, retry_until

if TYPE_CHECKING:
    from whatsray.observability.logs import IdValue
    from whatsray.outbox.memory import OutboxMemory

__all__ = ["BACKGROUND_RETRY", "INTERNAL_ERROR", "BackgroundSends"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# A background send that raised (the store unreachable, a restarting actor) is tried again at
# these intervals, for up to `background_deadline_s`; then the sweep takes it up.
BACKGROUND_RETRY = Backoff(initial_s=0.5, factor=2.0, max_s=30.0)
# What a background send that raised for a bug (not transient) is dead-lettered as.
INTERNAL_ERROR = "internal_error"


class BackgroundSends:
    if TYPE_CHECKING:
        phone_number_id: str
        memory: OutboxMemory
        _ledger: OutboundLedger
        _now: Callable[[], float]
        _sleep: Callable[[float], Awaitable[None]]
        _background_retry: Backoff
        _background_deadline_s: float
        _delivering: dict[str, float]

        def _check_open(self) -> None: ...

        def _check_number(self, items: Sequence[OutboundItem]) -> None: ...

        def _count(self, event: str, n: int = 1) -> None: ...

        def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]: ...

        def _lane(self, key: str) -> AbstractAsyncContextManager[None]: ...

        async def _deliver(self, outbound_id: str) -> OutboundRecord: ...

        async def _park(
            self, outbound_id: str, reason: str, error_code: int | None, details: str | None
        ) -> None: ...

        def _log_ids(self, outbound_id: str) -> dict[str, IdValue]: ...

    async def dispatch(
        self,
        items: Sequence[OutboundItem],
        fresh: Sequence[bool] | None = None,
        windows: Mapping[str, float | None] | None = None,
    ) -> None:
        """Send items the caller already recorded in the ledger, in the background.

        For callers that made the items durable themselves (a turn's commit records its replies
        with the turn) and must not wait for Meta: the session host acks on commit. Returns at
        once; failures are logged, and dead-lettered as `submit` would.

        `fresh[i]`: item i was newly recorded by the caller (pending, never attempted), so the
        outbox need not read it back. `windows`: the chats' last inbound times as the caller
        knows them, so the outbox need not look the window up.
        """
        self._check_open()
        self._check_number(items)
        for chat, last_inbound_at in (windows or {}).items():
            self.memory.note_window(chat, last_inbound_at)
        newly = [
            item for item, new in zip(items, fresh or [False] * len(items), strict=True) if new
        ]
        for item in newly:
            self.memory.add_fresh(item)
        self._count("submitted", len(newly))
        self._spawn(self._send_logged(items))

    async def resume_pending(self, limit: int = 10_000) -> int:
        """Send what a previous outbox recorded but never finished (call once at start)."""
        return await self.sweep_pending(older_than_s=0.0, limit=limit)

    async def sweep_pending(self, older_than_s: float = 30.0, limit: int = 10_000) -> int:
        """Send what is pending in the ledger, older than `older_than_s`, and not being sent:
        what a previous outbox left, a reply whose session host died between its commit and its
        dispatch, a background send that failed. Returns how many it took up.

        Each goes through the grace wait for a status webhook first (the ledger cannot say
        whether an earlier outbox attempted it), so a message that did reach Meta is not sent
        again. The actor calls this at start and then periodically; a restarted session host
        calls it once (docs/outbox.md, "Sweeps").
        """
        self._check_open()
        records = await self._ledger.pending_outbound(self.phone_number_id, limit)
        cutoff = self._now() - older_than_s
        todo = [
            self.memory.put_loaded(r)
            for r in records
            if r.outbound_id not in self._delivering and r.created_at <= cutoff
        ]
        todo = [r for r in todo if r.status == "pending"]  # memory may know better
        if todo:
            log.info("taking up %d pending outbound message(s)", len(todo))
            self._spawn(self._send_logged([record.to_item() for record in todo]))
        return len(todo)

    async def _send_logged(self, items: Sequence[OutboundItem]) -> None:
        """Send items already in the ledger, in the background: one lane per recipient, parts
        in order, each lane retrying what raised (docs/outbox.md, "Background sends that
        raise")."""
        lanes: dict[str, list[str]] = {}
        for item in items:
            lanes.setdefault(recipient_key(item.to), []).append(item.outbound_id)
        self._delivering.update((i.outbound_id, i.created_at) for i in items)  # sweeps skip them
        try:
            await asyncio.gather(*(self._run_lane_logged(k, ids) for k, ids in lanes.items()))
        finally:
            for item in items:
                self._delivering.pop(item.outbound_id, None)

    async def _run_lane_logged(self, key: str, outbound_ids: list[str]) -> None:
        """`_run_lane` that never raises. A delivery that raised (not Meta's answer: that is
        handled in `_send_with_retries`) is tried again while the failure is transient (the
        store unreachable, an actor restarting) and until `background_deadline_s`, holding the
        lane so that later parts never overtake it; `_deliver` reads the record each time, so
        one sent meanwhile is not sent again. After the deadline the rest of the lane is left
        pending for the sweep; a permanent failure (a bug) dead-letters that message."""
        async with self._lane(key):
            for index, outbound_id in enumerate(outbound_ids):
                try:
                    await retry_until(
                        functools.partial(self._deliver, outbound_id),
                        what=f"background send of {outbound_id}",
                        backoff=self._background_retry,
                        deadline=self._now() + self._background_deadline_s,
                        now=self._now,
                        sleep=self._sleep,
                        on_retry=functools.partial(self._log_background_retry, outbound_id),
                    )
                except GaveUp as gave_up:
                    if gave_up.reason == "permanent" and await self._park_broken(
                        outbound_id, gave_up
                    ):
                        continue
                    left = outbound_ids[index:]
                    log.error(
                        "background send of %s gave up (%s); %d message(s) left pending for "
                        "the sweep: %s",
                        outbound_id,
                        gave_up.description,
                        len(left),
                        left,
                        exc_info=gave_up.error,
                        extra=self._log_ids(outbound_id),
                    )
                    return

    def _log_background_retry(self, outbound_id: str, error: BaseException, wait: float) -> None:
        log.warning(
            "background send of %s failed (%s: %s); retrying in %.1fs",
            outbound_id,
            type(error).__name__,
            error,
            wait,
            extra=self._log_ids(outbound_id),
        )

    async def _park_broken(self, outbound_id: str, gave_up: GaveUp) -> bool:
        """Dead-letter a message whose delivery raised for a bug, so it is listed and can be
        replayed; unless it got out before the bug struck. False: it stays pending."""
        known = self.memory.get(outbound_id)
        if known is not None and known.status != "pending":
            log.error("background send of %s raised after it was done (%s)", outbound_id,
                      gave_up.description, exc_info=gave_up.error,
                      extra=self._log_ids(outbound_id))  # fmt: skip
            return True
        reason = f"{INTERNAL_ERROR}:{type(gave_up.error).__name__}"
        log.error("background send of %s failed for good: dead-lettered", outbound_id,
                  exc_info=gave_up.error, extra=self._log_ids(outbound_id))  # fmt: skip
        try:
            await self._park(outbound_id, reason, None, gave_up.description)
        except Exception:
            log.exception("could not dead-letter %s: left pending for the sweep", outbound_id,
                          extra=self._log_ids(outbound_id))  # fmt: skip
            return False
        return True
