# Ray handles are untyped: a remote result is Any, and the return annotation is the contract.
# mypy: disable-error-code="no-any-return"
"""Clients of the Store actor, one per consumer: the session host's pipeline, the outbox's
ledger, the admin API, the agents' tools and the scheduler. Each has the methods its consumer's
protocol names and no others (`_check` below has mypy hold each to its protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors.clients._base import Client
from whatsray.admin.ports import AdminStorePort
from whatsray.calls import calls
from whatsray.outbox.ledger import (
    DeadLetter,
    OutboundItem,
    OutboundLedger,
    OutboundRecord,
    SendResult,
    StatusWrite,
)
from whatsray.outbox.window import WindowLookup
from whatsray.pipeline.host import HostStorePort
from whatsray.scheduling.models import JobKind
from whatsray.scheduling.ports import JobStorePort
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
from whatsray.tools.services import OptInStore, ToolStore
from whatsray.whatsapp.events import ChatKey, MessageEvent

STORE = "store"


class _Keep:
    """A field left out of `update_chat`: the store keeps its value (None is a value)."""


_KEEP = _Keep()


class HostStoreClient(Client):
    """The session host's store (`HostStorePort`: the turn pipeline and the handoff desk)."""

    async def record_inbound(
        self, event: MessageEvent, outcome: str = "recorded", outcome_ref: str | None = None
    ) -> bool:
        calls.count(STORE, "record_inbound")
        return await self._handle.record_inbound.remote(event, outcome, outcome_ref)

    async def record_outbound(self, item: OutboundItem) -> bool:
        calls.count(STORE, "record_outbound")
        return await self._handle.record_outbound.remote(item)

    async def quarantine(
        self, record: QuarantineRecord, messages: Sequence[MessageEvent] = ()
    ) -> bool:
        calls.count(STORE, "quarantine")
        return await self._handle.quarantine.remote(record, messages)

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> list[list[bool] | Exception]:
        calls.count(STORE, "commit_turns")
        return await self._handle.commit_turns.remote(commits)

    async def update_chat(
        self,
        chat: ChatKey | str,
        *,
        last_inbound_at: float | _Keep | None = _KEEP,
        handoff: bool | _Keep = _KEEP,
    ) -> None:
        # Only the fields given travel: the store keeps the others.
        given = {"last_inbound_at": last_inbound_at, "handoff": handoff}
        fields = {name: value for name, value in given.items() if value is not _KEEP}
        calls.count(STORE, "update_chat")
        return await self._handle.update_chat.remote(chat, **fields)

    async def load_session(self, chat: ChatKey | str) -> SessionSnapshot | None:
        calls.count(STORE, "load_session")
        return await self._handle.load_session.remote(chat)

    async def recent_messages(self, chat: ChatKey | str, limit: int = 50) -> list[MessageRecord]:
        calls.count(STORE, "recent_messages")
        return await self._handle.recent_messages.remote(chat, limit)

    async def get_contact(self, chat: ChatKey | str) -> Contact | None:
        calls.count(STORE, "get_contact")
        return await self._handle.get_contact.remote(chat)

    async def get_turn(self, turn_id: str) -> TurnRecord | None:
        calls.count(STORE, "get_turn")
        return await self._handle.get_turn.remote(turn_id)

    async def get_outbound_by_wamid(self, wamid: str) -> OutboundRecord | None:
        calls.count(STORE, "get_outbound_by_wamid")
        return await self._handle.get_outbound_by_wamid.remote(wamid)

    async def handoff_chats(
        self,
        phone_number_id: str | None = None,
        *,
        idle_before: float | None = None,
        limit: int = 1000,
    ) -> list[ChatRecord]:
        calls.count(STORE, "handoff_chats")
        return await self._handle.handoff_chats.remote(
            phone_number_id, idle_before=idle_before, limit=limit
        )

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
        calls.count(STORE, "record_echo")
        return await self._handle.record_echo.remote(
            chat, wamid, type_=type_, text=text, raw=raw, at=at
        )


class LedgerClient(Client):
    """The outbox's store: its `OutboundLedger`, and the chats' 24 h windows (`window`)."""

    async def record_outbound(self, item: OutboundItem) -> bool:
        calls.count(STORE, "record_outbound")
        return await self._handle.record_outbound.remote(item)

    async def get_outbound(self, outbound_id: str) -> OutboundRecord | None:
        calls.count(STORE, "get_outbound")
        return await self._handle.get_outbound.remote(outbound_id)

    async def pending_outbound(self, phone_number_id: str, limit: int) -> list[OutboundRecord]:
        calls.count(STORE, "pending_outbound")
        return await self._handle.pending_outbound.remote(phone_number_id, limit)

    async def note_attempt(self, outbound_id: str, last_error: str | None = None) -> int:
        calls.count(STORE, "note_attempt")
        return await self._handle.note_attempt.remote(outbound_id, last_error)

    async def mark_sent(self, outbound_id: str, wamid: str) -> None:
        calls.count(STORE, "mark_sent")
        return await self._handle.mark_sent.remote(outbound_id, wamid)

    async def mark_failed(self, outbound_id: str, reason: str, error_code: int | None) -> None:
        calls.count(STORE, "mark_failed")
        return await self._handle.mark_failed.remote(outbound_id, reason, error_code)

    async def add_dead_letter(
        self, outbound_id: str, reason: str, error_code: int | None, details: str | None
    ) -> str:
        calls.count(STORE, "add_dead_letter")
        return await self._handle.add_dead_letter.remote(outbound_id, reason, error_code, details)

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        calls.count(STORE, "get_dead_letter")
        return await self._handle.get_dead_letter.remote(dead_letter_id)

    async def mark_dead_letter_replayed(
        self, dead_letter_id: str, replay_outbound_id: str, at: float
    ) -> None:
        calls.count(STORE, "mark_dead_letter_replayed")
        return await self._handle.mark_dead_letter_replayed.remote(
            dead_letter_id, replay_outbound_id, at
        )

    async def apply_status(
        self, wamid: str, status: str, at: float, error_code: int | None
    ) -> str | None:
        calls.count(STORE, "apply_status")
        return await self._handle.apply_status.remote(wamid, status, at, error_code)

    async def write_behind(
        self, sent: Sequence[SendResult], statuses: Sequence[StatusWrite]
    ) -> None:
        calls.count(STORE, "write_behind")
        return await self._handle.write_behind.remote(sent, statuses)

    async def window(self, chat: str) -> float | None:
        """The chat's last inbound time (its 24 h window opened then); None: never wrote."""
        calls.count(STORE, "get_chat")
        record: ChatRecord | None = await self._handle.get_chat.remote(chat)
        return None if record is None else record.last_inbound_at


class AdminStoreClient(Client):
    """The admin API's store (`AdminStorePort`), and its counts for `GET /api/status`."""

    async def get_chat(self, chat: ChatKey | str) -> ChatRecord | None:
        calls.count(STORE, "get_chat")
        return await self._handle.get_chat.remote(chat)

    async def list_chats(
        self, limit: int = 50, offset: int = 0, *, phone_number_id: str | None = None
    ) -> list[ChatRecord]:
        calls.count(STORE, "list_chats")
        return await self._handle.list_chats.remote(limit, offset, phone_number_id=phone_number_id)

    async def get_messages(
        self, chat: ChatKey | str, limit: int = 50, before: int | None = None
    ) -> list[MessageRecord]:
        calls.count(STORE, "get_messages")
        return await self._handle.get_messages.remote(chat, limit, before)

    async def search_contacts(
        self, q: str, limit: int = 20, *, phone_number_id: str | None = None
    ) -> list[Contact]:
        calls.count(STORE, "search_contacts")
        return await self._handle.search_contacts.remote(q, limit, phone_number_id=phone_number_id)

    async def get_outbound(self, outbound_id: str) -> OutboundRecord | None:
        calls.count(STORE, "get_outbound")
        return await self._handle.get_outbound.remote(outbound_id)

    async def record_outbound(self, item: OutboundItem) -> bool:
        calls.count(STORE, "record_outbound")
        return await self._handle.record_outbound.remote(item)

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        calls.count(STORE, "get_dead_letter")
        return await self._handle.get_dead_letter.remote(dead_letter_id)

    async def list_turns(self, chat: ChatKey | str, limit: int = 50) -> list[TurnRecord]:
        calls.count(STORE, "list_turns")  # GET /api/chats/{chat}/turns
        return await self._handle.list_turns.remote(chat, limit)

    async def list_tool_calls(self, turn_id: str) -> list[ToolCallRecord]:
        calls.count(STORE, "list_tool_calls")
        return await self._handle.list_tool_calls.remote(turn_id)

    async def list_dead_letters(
        self,
        limit: int = 50,
        include_replayed: bool = False,
        offset: int = 0,
        *,
        phone_number_id: str | None = None,
    ) -> list[DeadLetter]:
        calls.count(STORE, "list_dead_letters")
        return await self._handle.list_dead_letters.remote(
            limit, include_replayed, offset, phone_number_id=phone_number_id
        )

    async def handoff_chats(
        self,
        phone_number_id: str | None = None,
        *,
        idle_before: float | None = None,
        limit: int = 1000,
    ) -> list[ChatRecord]:
        calls.count(STORE, "handoff_chats")
        return await self._handle.handoff_chats.remote(
            phone_number_id, idle_before=idle_before, limit=limit
        )

    async def status_counts(self) -> StatusCounts:
        calls.count(STORE, "status_counts")
        return await self._handle.status_counts.remote()

    async def get_quarantined(self, quarantine_id: str) -> QuarantineRecord | None:
        calls.count(STORE, "get_quarantined")
        return await self._handle.get_quarantined.remote(quarantine_id)

    async def list_quarantined(
        self, limit: int = 50, include_replayed: bool = False, offset: int = 0
    ) -> list[QuarantineRecord]:
        calls.count(STORE, "list_quarantined")
        return await self._handle.list_quarantined.remote(limit, include_replayed, offset)

    async def claim_quarantine_replay(self, quarantine_id: str) -> bool:
        calls.count(STORE, "claim_quarantine_replay")
        return await self._handle.claim_quarantine_replay.remote(quarantine_id)

    async def undo_quarantine_replay(self, quarantine_id: str) -> None:
        calls.count(STORE, "undo_quarantine_replay")
        return await self._handle.undo_quarantine_replay.remote(quarantine_id)

    async def unresolved_messages(
        self, older_than_s: float, limit: int = 100
    ) -> list[UnresolvedMessage]:
        calls.count(STORE, "unresolved_messages")
        return await self._handle.unresolved_messages.remote(older_than_s, limit)

    async def analytics_summary(
        self, start: float, end: float, phone_number_id: str | None = None
    ) -> dict[str, Any]:
        calls.count(STORE, "analytics_summary")
        return await self._handle.analytics_summary.remote(start, end, phone_number_id)

    async def analytics_daily(
        self, start: float, end: float, phone_number_id: str | None = None
    ) -> dict[str, Any]:
        calls.count(STORE, "analytics_daily")
        return await self._handle.analytics_daily.remote(start, end, phone_number_id)

    async def export_table(
        self,
        table: str,
        start: float | None = None,
        end: float | None = None,
        phone_number_id: str | None = None,
    ) -> bytes:
        calls.count(STORE, "export_table")
        return await self._handle.export_table.remote(table, start, end, phone_number_id)


class ToolStoreClient(Client):
    """The agents' tools' store (`ToolStore` and `OptInStore`)."""

    async def get_messages(
        self, chat: ChatKey | str, limit: int = 50, before: int | None = None
    ) -> list[MessageRecord]:
        calls.count(STORE, "get_messages")
        return await self._handle.get_messages.remote(chat, limit, before)

    async def search_contacts(self, q: str, limit: int = 20) -> list[Contact]:
        calls.count(STORE, "search_contacts")
        return await self._handle.search_contacts.remote(q, limit)

    async def record_outbound(self, item: OutboundItem) -> bool:
        calls.count(STORE, "record_outbound")
        return await self._handle.record_outbound.remote(item)

    async def set_opt_in(self, chat: ChatKey | str, opted_in: bool) -> bool:
        calls.count(STORE, "set_opt_in")
        return await self._handle.set_opt_in.remote(chat, opted_in)


class JobStoreClient(Client):
    """The scheduler's store (`JobStorePort`: jobs, runs, and what the system jobs read)."""

    async def insert_job(self, job: JobRecord) -> bool:
        calls.count(STORE, "insert_job")
        return await self._handle.insert_job.remote(job)

    async def replace_job(self, job: JobRecord) -> bool:
        calls.count(STORE, "replace_job")
        return await self._handle.replace_job.remote(job)

    async def delete_job(self, job_id: str) -> bool:
        calls.count(STORE, "delete_job")
        return await self._handle.delete_job.remote(job_id)

    async def get_job(self, job_id: str) -> JobRecord | None:
        calls.count(STORE, "get_job")
        return await self._handle.get_job.remote(job_id)

    async def list_jobs(
        self, kind: JobKind | None = None, chat: str | None = None, enabled: bool | None = None
    ) -> list[JobRecord]:
        calls.count(STORE, "list_jobs")
        return await self._handle.list_jobs.remote(kind, chat, enabled)

    async def record_job_run(self, run: JobRunRecord) -> bool:
        calls.count(STORE, "record_job_run")
        return await self._handle.record_job_run.remote(run)

    async def settle_job_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        reason: str | None = None,
        result: dict[str, Any] | None = None,
        entry_id: str | None = None,
    ) -> bool:
        calls.count(STORE, "settle_job_run")
        return await self._handle.settle_job_run.remote(
            run_id, status, reason=reason, result=result, entry_id=entry_id
        )

    async def list_job_runs(
        self, job_id: str, limit: int = 50, offset: int = 0
    ) -> list[JobRunRecord]:
        calls.count(STORE, "list_job_runs")
        return await self._handle.list_job_runs.remote(job_id, limit, offset)

    async def pending_job_runs(self, job_id: str | None = None) -> list[JobRunRecord]:
        calls.count(STORE, "pending_job_runs")
        return await self._handle.pending_job_runs.remote(job_id)

    async def last_job_run_at(self, job_id: str) -> float | None:
        calls.count(STORE, "last_job_run_at")
        return await self._handle.last_job_run_at.remote(job_id)

    async def prune_job_runs(self, before: float) -> int:
        calls.count(STORE, "prune_job_runs")
        return await self._handle.prune_job_runs.remote(before)

    async def activity_since(self, since: float) -> dict[str, int]:
        calls.count(STORE, "activity_since")
        return await self._handle.activity_since.remote(since)

    async def list_dead_letters(
        self, limit: int = 50, include_replayed: bool = False, offset: int = 0
    ) -> list[DeadLetter]:
        calls.count(STORE, "list_dead_letters")
        return await self._handle.list_dead_letters.remote(limit, include_replayed, offset)

    async def get_outbound(self, outbound_id: str) -> OutboundRecord | None:
        calls.count(STORE, "get_outbound")
        return await self._handle.get_outbound.remote(outbound_id)

    async def opted_in_chats(self, phone_number_id: str | None = None) -> list[str]:
        calls.count(STORE, "opted_in_chats")
        return await self._handle.opted_in_chats.remote(phone_number_id)


def _check(handle: Any) -> None:
    """Never called: mypy holds each client to the protocol its consumer takes."""
    host: HostStorePort = HostStoreClient(handle)
    ledger: OutboundLedger = LedgerClient(handle)
    window: WindowLookup = LedgerClient(handle).window
    admin: AdminStorePort = AdminStoreClient(handle)
    tools: ToolStore = ToolStoreClient(handle)
    opt_in: OptInStore = ToolStoreClient(handle)
    jobs: JobStorePort = JobStoreClient(handle)
    del host, ledger, window, admin, tools, opt_in, jobs
