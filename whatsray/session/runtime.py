"""What all the sessions of one registry share: hooks, config, clock, counters, and the helpers
that give every hook call the same failure rules (retry until committed, ack best effort, a failed
turn becomes an apology)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from whatsray.observability.logs import log_ids
from whatsray.retries import Backoff, GaveUp, retry_until
from whatsray.session.config import Quarantine, SessionConfig, SessionHooks
from whatsray.session.policies import DoubleTextingPolicy
from whatsray.session.turns import ToolCallJournal, TurnOutcome, TurnRequest, TurnResult

if TYPE_CHECKING:
    from whatsray.session.session import Session

__all__ = ["SessionRuntime", "TurnTimeoutError"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class TurnTimeoutError(TimeoutError):
    """A turn ran past `SessionConfig.turn_timeout_s` and was cancelled."""


class SessionRuntime:
    """Shared by the sessions of one registry (one pointer per session)."""

    def __init__(
        self,
        hooks: SessionHooks,
        config: SessionConfig,
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        on_busy: Callable[[Session], None],
        on_idle: Callable[[Session, int], None],
    ) -> None:
        self.hooks = hooks
        self.config = config
        self.now = now
        self.sleep = sleep
        self.on_busy = on_busy
        self.on_idle = on_idle  # (session, entries dropped without an ack)
        self.unacked = 0  # entries delivered and neither acked nor dropped
        self.turns = 0
        self.turn_failures = 0
        self.interrupts = 0
        self.rejected = 0
        self.duplicates = 0
        self.retries = 0
        self.quarantined = 0
        self.backoff = Backoff(
            initial_s=config.retry_initial_s, max_s=config.retry_max_s, jitter=config.retry_jitter
        )

    def timer(self, seconds: float) -> asyncio.Future[None]:
        """A future resolved after `seconds` (cancel it to stop the timer).

        With the real `asyncio.sleep` this is a bare loop timer, not a task: a turn runs under one
        and a busy host starts thousands of them.
        """
        if self.sleep is asyncio.sleep:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            handle = loop.call_later(seconds, _resolve, future)
            future.add_done_callback(lambda _: handle.cancel())
            return future
        return asyncio.ensure_future(self.sleep(seconds))

    def policy_for(self, agent: str | None) -> DoubleTextingPolicy:
        pick = self.hooks.policy_for
        if pick is None:
            return self.config.default_policy
        try:
            return pick(agent)
        except Exception:
            log.exception("policy_for(%r) failed: using the default policy", agent)
            return self.config.default_policy

    async def retrying(self, chat: str, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """Call until it succeeds, backing off while it fails transiently: an outage delays a
        chat, it never drops items. Raises `GaveUp` on a permanent failure, or once the failure
        outlasts `retry_deadline_s` (the caller quarantines the items)."""
        limit = self.config.retry_deadline_s
        ids = log_ids(chat=chat)

        def note(exc: BaseException, wait: float) -> None:
            self.retries += 1
            log.warning(
                "session: %s failed (%s: %s), retrying in %.1f s",
                what, type(exc).__name__, exc, wait, extra=ids,
            )  # fmt: skip

        return await retry_until(
            call,
            what=what,
            backoff=self.backoff,
            deadline=None if limit is None else self.now() + limit,
            now=self.now,
            sleep=self.sleep,
            on_retry=note,
        )

    async def quarantine(self, item: Quarantine) -> bool:
        """Store items given up on; False when even that failed for good (the caller leaves
        them unacked: they come back when the host re-reads its pending entries)."""
        self.quarantined += len(item.events)
        ids = log_ids(wamid=[e.idempotency_key for e in item.events], chat=item.chat)
        log.error(
            "session: %s gave up (%s: %s): %d item(s) quarantined",
            item.stage, item.reason, item.error, len(item.events), extra=ids,
        )  # fmt: skip
        store = self.hooks.quarantine
        if store is None:
            return True
        try:  # no deadline: the record is the items' last stop
            await retry_until(
                lambda: store(item),
                what="quarantine",
                backoff=self.backoff,
                deadline=None,
                now=self.now,
                sleep=self.sleep,
            )
        except GaveUp:
            log.exception("session: the quarantine record could not be written", extra=ids)
            return False
        return True

    async def ack(self, chat: str, tokens: tuple[str, ...]) -> None:
        """Ack committed items. Not retried: a redelivery is deduped on its event id and acked."""
        if not tokens:
            return
        self.unacked -= len(tokens)
        try:
            await self.hooks.ack(tokens)
        except Exception:
            ids = log_ids(chat=chat)
            log.warning("session: ack of %d item(s) failed", len(tokens), exc_info=True, extra=ids)

    async def failure_result(
        self, request: TurnRequest, exc: Exception, journal: ToolCallJournal
    ) -> TurnResult:
        """The result to commit for a failed turn: an apology, so the chat never loops on it.

        Its tool calls are the journal's, unfinished ones marked `cancelled`, unless
        `on_turn_error` returned some.
        """
        self.turn_failures += 1
        ids = log_ids(wamid=request.input_ids, turn_id=request.turn_id, chat=request.chat)
        log.warning("turn failed: %r", exc, extra=ids)
        calls = journal.cancel_unfinished()
        result: TurnResult | None = None
        if self.hooks.on_turn_error is not None:
            try:
                result = await self.hooks.on_turn_error(request, exc)
            except Exception:
                log.exception("on_turn_error failed, using the apology", extra=ids)
        if not isinstance(result, TurnResult):
            result = TurnResult(
                reply_parts=(self.config.apology,),
                agent=request.agent,
                outcome=TurnOutcome.FAILED,
                error=f"{type(exc).__name__}: {exc}",
            )
        if calls and not result.tool_calls:
            result = replace(result, tool_calls=calls)
        return result


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
