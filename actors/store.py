"""The Store actor: the only DuckDB writer (DuckDB allows one writing process).

It serves the methods below and no others: what the clients in `actors.clients.store` call,
the reads the tests use, readiness, and the counters the benchmarks read (`writer_stats`: the
group commit's; `call_counts`: the calls this process made, none today).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actors.metrics import start_actor_metrics
from whatsray import metrics
from whatsray.calls import calls
from whatsray.metrics.refresh import report_forever
from whatsray.observability.logs import LogSetup, configure_logging
from whatsray.outbox.ledger import (
    DeadLetter,
    OutboundItem,
    OutboundRecord,
    SendResult,
    StatusWrite,
)
from whatsray.scheduling.models import JobKind
from whatsray.store import Store
from whatsray.store.job_records import JobRecord, JobRunRecord, RunStatus
from whatsray.store.quarantine import QuarantineRecord, UnresolvedMessage
from whatsray.store.records import (
    ChatRecord,
    Contact,
    MessageRecord,
    SessionSnapshot,
    StatusCounts,
    ToolCallRecord,
    TurnCommit,
    TurnRecord,
)
from whatsray.whatsapp.events import ChatKey, MessageEvent


class StoreActor:
    def __init__(
        self, path: str, *, logs: LogSetup | None = None, metrics_every_s: float = 5.0
    ) -> None:
        start_actor_metrics("store")
        configure_logging(logs)  # first: what the constructor logs is formatted and redacted
        self._store = Store(Path(path))
        loop = asyncio.get_running_loop()
        self._started = loop.create_task(self._store.start())
        self._reporting = loop.create_task(report_forever(self._report_metrics, metrics_every_s))

    async def _report_metrics(self) -> None:
        store = await self._open("status_counts")
        metrics.handoffs_active.set((await store.status_counts()).handoffs)

    async def _open(self, op: str) -> Store:
        """The store, once its file is open (every method waits for that first). Counts the call
        (`whatsray_store_calls_total{op}`)."""
        metrics.store_calls.inc(op=op)
        if not self._started.done():
            # Shielded: a caller that gives up (a readiness probe timing out) must not cancel it.
            await asyncio.shield(self._started)
        self._started.result()  # a failed start fails every call with its error
        return self._store

    async def drain(self) -> None:
        """A new release's store opens the file next (actors/rollout.py): write what is
        queued and close it (DuckDB lets one process write a file)."""
        self._reporting.cancel()
        await (await self._open("drain")).close()

    # -- observability --------------------------------------------------------------------------

    async def ping(self) -> bool:
        return await (await self._open("ping")).ping()

    async def writer_stats(self) -> dict[str, int]:
        """The group commit's counters (`commits`: DuckDB transactions)."""
        return dataclasses.asdict((await self._open("writer_stats")).stats)

    async def call_counts(self) -> dict[str, int]:
        return calls.snapshot()

    async def status_counts(self) -> StatusCounts:
        """Dead letters not replayed and chats in handoff (`GET /api/status`)."""
        return await (await self._open("status_counts")).status_counts()

    # -- chats, contacts, messages, turns, sessions ---------------------------------------------

    async def record_inbound(
        self, event: MessageEvent, outcome: str = "recorded", outcome_ref: str | None = None
    ) -> bool:
        store = await self._open("record_inbound")
        return await store.record_inbound(event, outcome, outcome_ref)

    async def quarantine(
        self, record: QuarantineRecord, messages: Sequence[MessageEvent] = ()
    ) -> bool:
        return await (await self._open("quarantine")).quarantine(record, messages)

    async def update_chat(self, chat: ChatKey | str, **fields: Any) -> None:
        """Only the fields given (`last_inbound_at`, `handoff`, `agent`) change."""
        return await (await self._open("update_chat")).update_chat(chat, **fields)

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> list[list[bool] | Exception]:
        metrics.store_batch_rows.observe(len(commits), op="commit_turns")
        return await (await self._open("commit_turns")).commit_turns(commits)

    async def load_session(self, chat: ChatKey | str) -> SessionSnapshot | None:
        return await (await self._open("load_session")).load_session(chat)

    async def recent_messages(self, chat: ChatKey | str, limit: int = 50) -> list[MessageRecord]:
        return await (await self._open("recent_messages")).recent_messages(chat, limit)

    async def get_messages(
        self, chat: ChatKey | str, limit: int = 50, before: int | None = None
    ) -> list[MessageRecord]:
        return await (await self._open("get_messages")).get_messages(chat, limit, before)

    async def get_chat(self, chat: ChatKey | str) -> ChatRecord | None:
        return await (await self._open("get_chat")).get_chat(chat)

    async def list_chats(
        self, limit: int = 50, offset: int = 0, *, phone_number_id: str | None = None
    ) -> list[ChatRecord]:
        store = await self._open("list_chats")
        return await store.list_chats(limit, offset, phone_number_id=phone_number_id)

    async def get_contact(self, chat: ChatKey | str) -> Contact | None:
        return await (await self._open("get_contact")).get_contact(chat)

    async def search_contacts(
        self, q: str, limit: int = 20, *, phone_number_id: str | None = None
    ) -> list[Contact]:
        store = await self._open("search_contacts")
        return await store.search_contacts(q, limit, phone_number_id=phone_number_id)

    async def set_opt_in(self, chat: ChatKey | str, opted_in: bool) -> bool:
        return await (await self._open("set_opt_in")).set_opt_in(chat, opted_in)

    async def opted_in_chats(self, phone_number_id: str | None = None) -> list[str]:
        return await (await self._open("opted_in_chats")).opted_in_chats(phone_number_id)

    async def get_turn(self, turn_id: str) -> TurnRecord | None:
        return await (await self._open("get_turn")).get_turn(turn_id)

    async def list_turns(self, chat: ChatKey | str, limit: int = 50) -> list[TurnRecord]:
        return await (await self._open("list_turns")).list_turns(chat, limit)

    async def list_tool_calls(self, turn_id: str) -> list[ToolCallRecord]:
        return await (await self._open("list_tool_calls")).list_tool_calls(turn_id)

    async def count_messages(self, chat: ChatKey | str | None = None, **filters: Any) -> int:
        return await (await self._open("count_messages")).count_messages(chat, **filters)

    # -- handoff ----------------------------------------------------------------------------------

    async def get_outbound_by_wamid(self, wamid: str) -> OutboundRecord | None:
        return await (await self._open("get_outbound_by_wamid")).get_outbound_by_wamid(wamid)

    async def handoff_chats(
        self,
        phone_number_id: str | None = None,
        *,
        idle_before: float | None = None,
        limit: int = 1000,
    ) -> list[ChatRecord]:
        store = await self._open("handoff_chats")
        return await store.handoff_chats(phone_number_id, idle_before=idle_before, limit=limit)

    async def record_echo(
        self,
        chat: ChatKey | str,
        wamid: str,
        *,
        type_: str,
        text: str | None,
        raw: dict[str, Any],
        at: float,
    ) -> bool:
        store = await self._open("record_echo")
        return await store.record_echo(chat, wamid, type_=type_, text=text, raw=raw, at=at)

    # -- the outbound ledger ----------------------------------------------------------------------

    async def record_outbound(self, item: OutboundItem) -> bool:
        return await (await self._open("record_outbound")).record_outbound(item)

    async def get_outbound(self, outbound_id: str) -> OutboundRecord | None:
        return await (await self._open("get_outbound")).get_outbound(outbound_id)

    async def pending_outbound(self, phone_number_id: str, limit: int) -> list[OutboundRecord]:
        return await (await self._open("pending_outbound")).pending_outbound(phone_number_id, limit)

    async def note_attempt(self, outbound_id: str, last_error: str | None = None) -> int:
        return await (await self._open("note_attempt")).note_attempt(outbound_id, last_error)

    async def mark_sent(self, outbound_id: str, wamid: str) -> None:
        return await (await self._open("mark_sent")).mark_sent(outbound_id, wamid)

    async def mark_failed(self, outbound_id: str, reason: str, error_code: int | None) -> None:
        return await (await self._open("mark_failed")).mark_failed(outbound_id, reason, error_code)

    async def add_dead_letter(
        self, outbound_id: str, reason: str, error_code: int | None, details: str | None
    ) -> str:
        return await (await self._open("add_dead_letter")).add_dead_letter(
            outbound_id, reason, error_code, details
        )

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        return await (await self._open("get_dead_letter")).get_dead_letter(dead_letter_id)

    async def list_dead_letters(
        self,
        limit: int = 50,
        include_replayed: bool = False,
        offset: int = 0,
        *,
        phone_number_id: str | None = None,
    ) -> list[DeadLetter]:
        return await (await self._open("list_dead_letters")).list_dead_letters(
            limit, include_replayed, offset, phone_number_id=phone_number_id
        )

    async def mark_dead_letter_replayed(
        self, dead_letter_id: str, replay_outbound_id: str, at: float
    ) -> None:
        store = await self._open("mark_dead_letter_replayed")
        return await store.mark_dead_letter_replayed(dead_letter_id, replay_outbound_id, at)

    async def apply_status(
        self, wamid: str, status: str, at: float, error_code: int | None
    ) -> str | None:
        return await (await self._open("apply_status")).apply_status(wamid, status, at, error_code)

    async def write_behind(
        self, sent: Sequence[SendResult], statuses: Sequence[StatusWrite]
    ) -> None:
        metrics.store_batch_rows.observe(len(sent) + len(statuses), op="write_behind")
        return await (await self._open("write_behind")).write_behind(sent, statuses)

    # -- analytics (the admin API, docs/analytics.md) --------------------------------------------

    async def analytics_summary(
        self, start: float, end: float, phone_number_id: str | None = None
    ) -> dict[str, Any]:
        store = await self._open("analytics_summary")
        return await store.analytics_summary(start, end, phone_number_id)

    async def analytics_daily(
        self, start: float, end: float, phone_number_id: str | None = None
    ) -> dict[str, Any]:
        store = await self._open("analytics_daily")
        return await store.analytics_daily(start, end, phone_number_id)

    async def export_table(
        self,
        table: str,
        start: float | None = None,
        end: float | None = None,
        phone_number_id: str | None = None,
    ) -> bytes:
        store = await self._open("export_table")
        return await store.export_table(table, start, end, phone_number_id)

    # -- the quarantine and the inbound account (the admin API) ----------------------------------

    async def get_quarantined(self, quarantine_id: str) -> QuarantineRecord | None:
        return await (await self._open("get_quarantined")).get_quarantined(quarantine_id)

    async def list_quarantined(
        self, limit: int = 50, include_replayed: bool = False, offset: int = 0
    ) -> list[QuarantineRecord]:
        return await (await self._open("list_quarantined")).list_quarantined(
            limit, include_replayed, offset
        )

    async def claim_quarantine_replay(self, quarantine_id: str) -> bool:
        store = await self._open("claim_quarantine_replay")
        return await store.claim_quarantine_replay(quarantine_id)

    async def undo_quarantine_replay(self, quarantine_id: str) -> None:
        store = await self._open("undo_quarantine_replay")
        return await store.undo_quarantine_replay(quarantine_id)

    async def unresolved_messages(
        self, older_than_s: float, limit: int = 100
    ) -> list[UnresolvedMessage]:
        store = await self._open("unresolved_messages")
        return await store.unresolved_messages(older_than_s, limit)

    # -- jobs (the scheduler) ---------------------------------------------------------------------

    async def insert_job(self, job: JobRecord) -> bool:
        return await (await self._open("insert_job")).insert_job(job)

    async def replace_job(self, job: JobRecord) -> bool:
        return await (await self._open("replace_job")).replace_job(job)

    async def delete_job(self, job_id: str) -> bool:
        return await (await self._open("delete_job")).delete_job(job_id)

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await (await self._open("get_job")).get_job(job_id)

    async def list_jobs(
        self, kind: JobKind | None = None, chat: str | None = None, enabled: bool | None = None
    ) -> list[JobRecord]:
        return await (await self._open("list_jobs")).list_jobs(kind, chat, enabled)

    async def record_job_run(self, run: JobRunRecord) -> bool:
        return await (await self._open("record_job_run")).record_job_run(run)

    async def settle_job_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        reason: str | None = None,
        result: dict[str, Any] | None = None,
        entry_id: str | None = None,
    ) -> bool:
        store = await self._open("settle_job_run")
        return await store.settle_job_run(
            run_id, status, reason=reason, result=result, entry_id=entry_id
        )

    async def list_job_runs(
        self, job_id: str, limit: int = 50, offset: int = 0
    ) -> list[JobRunRecord]:
        return await (await self._open("list_job_runs")).list_job_runs(job_id, limit, offset)

    async def pending_job_runs(self, job_id: str | None = None) -> list[JobRunRecord]:
        return await (await self._open("pending_job_runs")).pending_job_runs(job_id)

    async def last_job_run_at(self, job_id: str) -> float | None:
        return await (await self._open("last_job_run_at")).last_job_run_at(job_id)

    async def prune_job_runs(self, before: float) -> int:
        return await (await self._open("prune_job_runs")).prune_job_runs(before)

    async def activity_since(self, since: float) -> dict[str, int]:
        return await (await self._open("activity_since")).activity_since(since)
