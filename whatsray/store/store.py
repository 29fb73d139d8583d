"""`Store`: the one owner of the DuckDB file, with an async API that never blocks the loop.

Threads: the writer thread (`GroupCommitWriter`) owns the connection, runs the migrations at
start and applies every write in group-committed batches; one reader thread runs the reads on a
cursor of that connection (DuckDB's MVCC: a read sees every committed write). The event loop only
enqueues work and awaits futures. Writes resolve after their COMMIT, so "awaited" means durable.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from whatsray.outbox.ledger import (
    DeadLetter,
    OutboundItem,
    OutboundLedger,
    OutboundRecord,
    SendResult,
    StatusWrite,
)
from whatsray.store import chat_writes, reads
from whatsray.store.analytics import AnalyticsMixin
from whatsray.store.chat_writes import (
    CONTACT,
    INBOUND,
    TURN_RESULTS,
    ContactUpdate,
    PreparedOutbound,
    PreparedSession,
    TurnResults,
)
from whatsray.store.contacts_seen import ContactsSeen
from whatsray.store.counts import CountsMixin
from whatsray.store.errors import StoreClosedError
from whatsray.store.jobs import JobsMixin
from whatsray.store.ledger_writes import (
    ATTEMPT,
    DEAD_LETTER,
    FAILED,
    SENT,
    STATUS,
    Attempt,
    DeadLetterRequest,
    Failure,
    Sent,
    StatusUpdate,
    mark_dead_letter_replayed,
)
from whatsray.store.migrations import Migration, current_version, migrate
from whatsray.store.opt_in import OptInMixin
from whatsray.store.quarantine import QuarantineMixin
from whatsray.store.records import (
    ChatRecord,
    Contact,
    MessageRecord,
    SessionSnapshot,
    ToolCallRecord,
    TurnCommit,
    TurnRecord,
    chat_string,
)
from whatsray.store.rows import dump_json, inbound_row, outbound_from_row
from whatsray.store.schema import MIGRATIONS
from whatsray.store.validation import check_limit, check_tool_calls
from whatsray.store.writer import GroupCommitWriter, WriteKind, WriteOp, WriterStats
from whatsray.whatsapp.events import ChatKey, MessageEvent

__all__ = ["UNSET", "Store"]

log = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P")


class _Unset(enum.Enum):
    UNSET = "UNSET"


UNSET = _Unset.UNSET  # "leave this field as it is" (None is a value: no agent)


def _new_dead_letter_id() -> str:
    return f"dl_{uuid.uuid4().hex}"


class Store(AnalyticsMixin, CountsMixin, JobsMixin, OptInMixin, QuarantineMixin):
    """contacts, chats, messages, turns, sessions, the outbound ledger, dead letters, the
    scheduler's jobs and job runs (`JobsMixin`), and contacts' opt-in (`OptInMixin`).

    Implements `whatsray.outbox.ledger.OutboundLedger`. Use as `async with Store(path) as s:`
    or `await s.start()` ... `await s.close()`; `close()` applies every write queued before it.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        batch_interval_s: float = 0.01,
        max_batch: int = 500,
        now: Callable[[], float] = time.time,
        new_id: Callable[[], str] = _new_dead_letter_id,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = Path(path)
        self._now = now
        self._new_id = new_id
        self._migrations = tuple(migrations)
        self._writer = GroupCommitWriter(
            self._connect,
            on_open=self._on_open,
            batch_interval_s=batch_interval_s,
            max_batch=max_batch,
        )
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whatsray-store-read")
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._open = False
        self._closed = False
        self.schema_version = 0
        self.applied_migrations: list[int] = []
        self._contacts = ContactsSeen()

    # -- lifecycle ------------------------------------------------------------------------------

    def _connect(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(str(self.path))

    def _on_open(self, conn: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        # Runs on the writer thread: migrations, then the reader's cursor.
        self.applied_migrations = migrate(conn, self._migrations, now=self._now)
        self.schema_version = current_version(conn)
        return conn.cursor()

    async def start(self) -> None:
        """Open the file (creating it), migrate it, start the threads."""
        if self._open or self._closed:
            raise RuntimeError("a Store is started once")
        self._cursor = await asyncio.wrap_future(self._writer.start())
        self._open = True

    async def close(self) -> None:
        """Refuse new calls, finish the reads in flight, apply the queued writes, close."""
        if self._closed:
            return
        self._closed = True
        if not self._open:
            self._reader.shutdown(wait=False)
            return
        self._open = False
        await asyncio.to_thread(self._reader.shutdown, wait=True)
        await self._close_analytics()
        cursor, self._cursor = self._cursor, None
        if cursor is None:
            await asyncio.wrap_future(self._writer.stop())
            return
        # The reader's cursor closes first, so the writer's close is the last one (checkpoint).
        closed: list[bool] = []

        def close_cursor(_conn: duckdb.DuckDBPyConnection) -> None:
            cursor.close()
            closed.append(True)

        await asyncio.wrap_future(self._writer.stop(before_close=close_cursor))
        if not closed:  # the writer had died: nobody ran the hook
            await asyncio.to_thread(cursor.close)

    async def __aenter__(self) -> Store:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def stats(self) -> WriterStats:
        """Group-commit counters (writes, commits, batches...) since start."""
        return self._writer.stats

    @property
    def queue_depth(self) -> int:
        return self._writer.queue_depth

    async def ping(self) -> bool:
        """Readiness: open, and a query round-trips through the reader thread."""
        if not self._open or not self._writer.alive:
            return False
        try:
            return await self._read(lambda cur: cur.execute("SELECT 1").fetchone() == (1,))
        except (duckdb.Error, StoreClosedError):
            return False

    async def _write(self, kind: WriteKind[P, T], param: P) -> T:
        if not self._open:
            raise StoreClosedError("the store is not open")
        return await asyncio.wrap_future(self._writer.submit(kind, param))

    async def _write_op(self, op: WriteOp[T]) -> T:
        if not self._open:
            raise StoreClosedError("the store is not open")
        return await asyncio.wrap_future(self._writer.submit_op(op))

    async def _read(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        cursor = self._cursor
        if not self._open or cursor is None:
            raise StoreClosedError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, fn, cursor)

    # -- chats, contacts, messages, turns, sessions --------------------------------------------

    async def record_inbound(
        self, event: MessageEvent, outcome: str = "recorded", outcome_ref: str | None = None
    ) -> bool:
        """Store an inbound message (and its chat and contact) with its outcome (it needs no
        turn, or is handed off). False: this wamid is known."""
        return await self._write(INBOUND, inbound_row(event, self._now(), outcome, outcome_ref))

    async def upsert_contact(
        self,
        chat: ChatKey | str,
        *,
        phone: str | None = None,
        bsuid: str | None = None,
        profile_name: str | None = None,
        seen_at: float | None = None,
    ) -> None:
        """Add or update a contact; None leaves a known value as it is."""
        key = _chat_key(chat)
        seen = seen_at if seen_at is not None else self._now()
        update = ContactUpdate(str(key), key.phone_number_id, phone, bsuid, profile_name, seen)
        await self._write(CONTACT, update)

    async def update_chat(
        self,
        chat: ChatKey | str,
        *,
        agent: str | _Unset | None = UNSET,
        handoff: bool | _Unset = UNSET,
        last_inbound_at: float | _Unset | None = UNSET,
    ) -> None:
        """Set the given fields of the chat (created if new); fields left UNSET are kept."""
        key = _chat_key(chat)
        given = {"agent": agent, "handoff": handoff, "last_inbound_at": last_inbound_at}
        fields = {name: value for name, value in given.items() if value is not UNSET}
        if "handoff" in fields and not isinstance(fields["handoff"], bool):
            raise TypeError("handoff must be a bool")
        now = self._now()
        await self._write_op(
            lambda conn: chat_writes.update_chat(
                conn, str(key), key.phone_number_id, key.user, fields, now
            )
        )

    async def record_turn(self, turn: TurnRecord) -> None:
        """Record a turn; its input messages count as processed. Same id again: replaced."""
        await self._write(TURN_RESULTS, TurnResults(self._now(), turn=turn))

    async def save_session(self, snapshot: SessionSnapshot) -> None:
        session = _prepare_session(snapshot)
        await self._write(TURN_RESULTS, TurnResults(self._now(), session=session))

    async def record_turn_results(
        self,
        turn: TurnRecord,
        outbound: Sequence[OutboundItem] = (),
        session: SessionSnapshot | None = None,
        tool_calls: Sequence[ToolCallRecord] = (),
        inputs: Sequence[MessageEvent] = (),
    ) -> list[bool]:
        """A turn's results in one transaction: its input messages (insert-if-absent), the turn
        and its tool calls (replacing any of an earlier try), its replies recorded in the
        outbound ledger (pending; the outbox sends them), and the session snapshot. Returns, per
        reply, whether it was new (False: already recorded by an earlier try of this turn)."""
        rows = tuple(inbound_row(event, self._now()) for event in inputs)
        commit = TurnCommit(turn, rows, tuple(outbound), session, tuple(tool_calls))
        return await self._write(TURN_RESULTS, self._turn_results(commit))

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> list[list[bool] | Exception]:
        """Many chats' turns in one call: each is `record_turn_results` of its parts, and they
        share the writer's transaction (group commit). A bad turn fails alone: its entry is the
        exception, the others are committed (`writer.py` isolates a failing write)."""
        if not self._open:
            raise StoreClosedError("the store is not open")
        outcome: list[list[bool] | Exception] = []
        valid: list[TurnResults] = []
        for commit in commits:
            try:
                valid.append(self._turn_results(commit))
                outcome.append([])  # placeholder: filled once committed
            except (ValueError, TypeError) as exc:  # bad input: this turn only
                outcome.append(exc)
        futures = self._writer.submit_many(TURN_RESULTS, valid)
        results = await asyncio.gather(
            *(asyncio.wrap_future(f) for f in futures), return_exceptions=True
        )
        for written, result in zip(valid, results, strict=True):
            if not isinstance(result, BaseException):
                self._contacts.written(written.inbound)
        done = iter(results)
        return [o if isinstance(o, Exception) else _as_outcome(next(done)) for o in outcome]

    def _turn_results(self, commit: TurnCommit) -> TurnResults:
        check_tool_calls(commit.turn, commit.tool_calls)
        now = self._now()
        return TurnResults(
            now,
            turn=commit.turn,
            inbound=tuple(self._contacts.mark(row) for row in commit.inputs),
            outbound=tuple(_prepare_outbound(item) for item in commit.outbound),
            session=_prepare_session(commit.session) if commit.session is not None else None,
            tool_calls=commit.tool_calls,
        )

    async def load_session(self, chat: ChatKey | str) -> SessionSnapshot | None:
        """What a session rebuilds from; None for a chat never seen."""
        key = chat_string(chat)
        return await self._read(lambda cur: reads.load_session(cur, key))

    async def recent_messages(self, chat: ChatKey | str, limit: int = 50) -> list[MessageRecord]:
        """The history window: the chat's last `limit` messages, oldest first."""
        return await self.get_messages(chat, limit)

    async def get_messages(
        self, chat: ChatKey | str, limit: int = 50, before: int | None = None
    ) -> list[MessageRecord]:
        """A page of the chat, oldest first; `before` is a `seq` cursor (exclusive)."""
        key = chat_string(chat)
        check_limit(limit)
        return await self._read(lambda cur: reads.get_messages(cur, key, limit, before))

    async def get_message(self, message_id: str) -> MessageRecord | None:
        return await self._read(lambda cur: reads.get_message(cur, message_id))

    async def pending_inbound(self, chat: ChatKey | str) -> list[MessageRecord]:
        """Inbound messages stored but not consumed by any recorded turn, in arrival order."""
        key = chat_string(chat)
        return await self._read(lambda cur: reads.pending_inbound(cur, key))

    async def get_chat(self, chat: ChatKey | str) -> ChatRecord | None:
        key = chat_string(chat)
        return await self._read(lambda cur: reads.get_chat(cur, key))

    async def list_chats(
        self, limit: int = 50, offset: int = 0, *, phone_number_id: str | None = None
    ) -> list[ChatRecord]:
        """Most recently active first; only that business number's when given."""
        check_limit(limit, offset)
        return await self._read(lambda cur: reads.list_chats(cur, limit, offset, phone_number_id))

    async def get_contact(self, chat: ChatKey | str) -> Contact | None:
        key = chat_string(chat)
        return await self._read(lambda cur: reads.get_contact(cur, key))

    async def search_contacts(
        self, q: str, limit: int = 20, *, phone_number_id: str | None = None
    ) -> list[Contact]:
        """Contacts whose name, number, BSUID or chat contains `q` (case-insensitive); only
        that business number's when given."""
        check_limit(limit)
        if not q.strip():
            return []
        return await self._read(lambda cur: reads.search_contacts(cur, q, limit, phone_number_id))

    async def get_turn(self, turn_id: str) -> TurnRecord | None:
        return await self._read(lambda cur: reads.get_turn(cur, turn_id))

    async def list_turns(self, chat: ChatKey | str, limit: int = 50) -> list[TurnRecord]:
        key = chat_string(chat)
        check_limit(limit)
        return await self._read(lambda cur: reads.list_turns(cur, key, limit))

    async def list_tool_calls(self, turn_id: str) -> list[ToolCallRecord]:
        """The tool calls of a turn, in order (empty for a turn without any, or unknown)."""
        return await self._read(lambda cur: reads.list_tool_calls(cur, turn_id))

    # -- the outbound ledger (OutboundLedger) ---------------------------------------------------

    async def record_outbound(self, item: OutboundItem) -> bool:
        """Record `item` as pending (0 attempts). False, and no change, if the id exists."""
        results = TurnResults(self._now(), outbound=(_prepare_outbound(item),))
        (recorded,) = await self._write(TURN_RESULTS, results)
        return recorded

    async def get_outbound(self, outbound_id: str) -> OutboundRecord | None:
        return await self._read(lambda cur: reads.get_outbound(cur, outbound_id))

    async def pending_outbound(self, phone_number_id: str, limit: int) -> list[OutboundRecord]:
        return await self._read(lambda cur: reads.pending_outbound(cur, phone_number_id, limit))

    async def note_attempt(self, outbound_id: str, last_error: str | None = None) -> int:
        """Count a send attempt before it is made; the new count. Unknown id: KeyError."""
        return await self._write(ATTEMPT, Attempt(outbound_id, last_error, self._now()))

    async def mark_sent(self, outbound_id: str, wamid: str) -> None:
        await self._write(SENT, Sent(outbound_id, wamid, self._now()))

    async def mark_failed(self, outbound_id: str, reason: str, error_code: int | None) -> None:
        await self._write(FAILED, Failure(outbound_id, reason, error_code, self._now()))

    async def add_dead_letter(
        self, outbound_id: str, reason: str, error_code: int | None, details: str | None
    ) -> str:
        """Park the message (status "dead"); the dead letter's id. Repeats return the same id
        until it is replayed. Unknown outbound id: `UnknownOutboundError` (a KeyError)."""
        request = DeadLetterRequest(
            outbound_id, reason, error_code, details, self._new_id(), self._now()
        )
        return await self._write(DEAD_LETTER, request)

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        return await self._read(lambda cur: reads.get_dead_letter(cur, dead_letter_id))

    async def list_dead_letters(
        self,
        limit: int = 50,
        include_replayed: bool = False,
        offset: int = 0,
        *,
        phone_number_id: str | None = None,
    ) -> list[DeadLetter]:
        """Newest first; replayed ones only when asked; only that business number's when
        given."""
        check_limit(limit, offset)
        return await self._read(
            lambda cur: reads.list_dead_letters(
                cur, limit, offset, include_replayed, phone_number_id
            )
        )

    async def mark_dead_letter_replayed(
        self, dead_letter_id: str, replay_outbound_id: str, at: float
    ) -> None:
        """Note the replay (first call wins; unknown ids are ignored)."""
        await self._write_op(
            lambda conn: mark_dead_letter_replayed(conn, dead_letter_id, replay_outbound_id, at)
        )

    async def write_behind(
        self, sent: Sequence[SendResult], statuses: Sequence[StatusWrite]
    ) -> None:
        """The outbox's writes behind its sends, in one call: wamids (with attempt counts)
        first, then status webhooks; queued together, so one transaction holds them (writer.py
        applies `mark_sent` before `apply_status`). A write that fails alone is logged."""
        if not self._open:
            raise StoreClosedError("the store is not open")
        now = self._now()
        futures: list[Future[Any]] = [
            *self._writer.submit_many(
                SENT, [Sent(s.outbound_id, s.wamid, now, s.attempts) for s in sent]
            ),
            *self._writer.submit_many(
                STATUS, [StatusUpdate(u.wamid, u.status, u.at, u.error_code, now) for u in statuses]
            ),
        ]
        results = await asyncio.gather(
            *(asyncio.wrap_future(f) for f in futures), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                log.warning("write behind a send failed: %s: %s", type(result).__name__, result)
            elif isinstance(result, BaseException):
                raise result

    async def apply_status(
        self, wamid: str, status: str, at: float, error_code: int | None
    ) -> str | None:
        """Merge a status webhook monotonically; the resulting status, None for an unknown
        wamid (kept, and merged if `mark_sent` later stores that wamid)."""
        update = StatusUpdate(wamid, status, at, error_code, self._now())
        return await self._write(STATUS, update)

    # -- handoff and the window (docs/handoff.md) ------------------------------------------------

    async def get_outbound_by_wamid(self, wamid: str) -> OutboundRecord | None:
        """The outbound message Meta accepted under `wamid` (what a quoted reply points at)."""
        return await self._read(
            lambda cur: _first_outbound(
                cur.execute("SELECT * FROM outbound WHERE wamid = ? LIMIT 1", [wamid])
            )
        )

    async def handoff_chats(
        self,
        phone_number_id: str | None = None,
        *,
        idle_before: float | None = None,
        limit: int = 1000,
    ) -> list[ChatRecord]:
        """Chats handed to a person, most recently active first (`updated_at` moves with every
        message in or out and every change of the chat). `idle_before`: only those with no
        activity since then (what the automatic release looks for)."""
        check_limit(limit)

        def read(cur: duckdb.DuckDBPyConnection) -> list[ChatRecord]:
            result = cur.execute(
                "SELECT chat, phone_number_id, user_id AS user, agent, handoff, last_inbound_at,"
                " created_at, updated_at FROM chats WHERE handoff"
                " AND (?::VARCHAR IS NULL OR phone_number_id = ?)"
                " AND (?::DOUBLE IS NULL OR updated_at < ?)"
                " ORDER BY updated_at DESC, chat LIMIT ?",
                [phone_number_id, phone_number_id, idle_before, idle_before, limit],
            )
            names = [column[0] for column in result.description or ()]
            return [ChatRecord(**dict(zip(names, row, strict=True))) for row in result.fetchall()]

        return await self._read(read)

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
        """A message the business sent from the WhatsApp Business app (`smb_message_echoes`):
        stored as outbound in the chat's history (id and wamid: Meta's), and the chat handed to
        a person, in one transaction. Never in the outbound ledger: the outbox must not send
        it. False (and nothing changed) when this echo was stored before."""
        key = _chat_key(chat)
        raw_json = dump_json(raw)
        now = self._now()

        def write(conn: duckdb.DuckDBPyConnection) -> bool:
            inserted = conn.execute(
                "INSERT INTO messages (id, chat, direction, type, text, raw, wamid, status,"
                " created_at, updated_at) VALUES (?, ?, 'out', ?, ?, ?, ?, 'sent', ?, ?)"
                " ON CONFLICT DO NOTHING RETURNING id",
                [wamid, str(key), type_, text, raw_json, wamid, at, now],
            ).fetchall()
            if not inserted:
                return False
            chat_writes.update_chat(
                conn, str(key), key.phone_number_id, key.user, {"handoff": True}, now
            )
            return True

        return await self._write_op(write)


def _as_outcome(result: list[bool] | BaseException) -> list[bool] | Exception:
    if isinstance(result, BaseException) and not isinstance(result, Exception):
        raise result  # a cancellation (or worse) is the caller's, not a failed turn
    return result


def _first_outbound(result: duckdb.DuckDBPyConnection) -> OutboundRecord | None:
    names = [column[0] for column in result.description or ()]
    row = result.fetchone()
    return outbound_from_row(dict(zip(names, row, strict=True))) if row is not None else None


def _chat_key(chat: ChatKey | str) -> ChatKey:
    return chat if isinstance(chat, ChatKey) else ChatKey.parse(chat)


def _prepare_outbound(item: OutboundItem) -> PreparedOutbound:
    return PreparedOutbound(item, _chat_key(item.chat).user, dump_json(item.body))


def _prepare_session(snapshot: SessionSnapshot) -> PreparedSession:
    # JSON-encoded here, so a state that cannot be stored fails at the call, not in a batch.
    key = _chat_key(snapshot.chat)
    return PreparedSession(snapshot, key.phone_number_id, key.user, dump_json(snapshot.state))


def _implements_ledger(store: Store) -> OutboundLedger:
    return store  # mypy checks that Store satisfies the protocol
