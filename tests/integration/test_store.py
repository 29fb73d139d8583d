"""The store on real DuckDB files: migrations, group commit, reads, lifecycle.

The outbound ledger's behaviour is in test_store_ledger.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.integration.store_helpers import (
    FakeClock,
    chat,
    inbound,
    outbound,
    write_as_an_old_version,
)
from whatsray.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    MigrationError,
    SchemaTooNewError,
    SessionSnapshot,
    Store,
    StoreClosedError,
    StoreWriteError,
    ToolCallRecord,
    TurnCommit,
    TurnRecord,
    UnknownOutboundError,
)
from whatsray.store.quarantine import QuarantineRecord, quarantine_id
from whatsray.store.rows import inbound_row

pytestmark = pytest.mark.integration

TABLES = {
    "schema_version",
    "contacts",
    "chats",
    "messages",
    "turns",
    "sessions",
    "outbound",
    "dead_letters",
    "early_statuses",
    "tool_calls",
    "jobs",
    "job_runs",
    "quarantine",
}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "whatsray.duckdb"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with Store(db_path, now=clock) as s:
        yield s


def _tables(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return {row[0] for row in conn.execute("SHOW TABLES").fetchall()}


# -- migrations ----------------------------------------------------------------------------------


async def test_a_new_file_is_created_and_migrated(db_path: Path) -> None:
    async with Store(db_path) as s:
        assert s.applied_migrations == [m.version for m in MIGRATIONS]
        assert s.schema_version == SCHEMA_VERSION
        assert await s.ping()
    assert _tables(db_path) == TABLES


async def test_reopening_an_up_to_date_file_applies_nothing(db_path: Path) -> None:
    async with Store(db_path):
        pass
    async with Store(db_path) as again:
        assert again.applied_migrations == []
        assert again.schema_version == SCHEMA_VERSION


async def test_a_file_from_a_newer_whatsray_is_refused(db_path: Path) -> None:
    async with Store(db_path):
        pass
    with duckdb.connect(str(db_path)) as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'from the future', 0)")
    newer = Store(db_path)
    with pytest.raises(SchemaTooNewError, match="version 999"):
        await newer.start()
    await newer.close()
    # The refused open left the file closed and untouched.
    with duckdb.connect(str(db_path)) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (999,)


async def test_a_failing_migration_is_rolled_back_whole(db_path: Path) -> None:
    broken = Migration(
        SCHEMA_VERSION + 1,
        "half good",
        ("CREATE TABLE extra (x INTEGER)", "CREATE TABLE nope ("),
    )
    store = Store(db_path, migrations=(*MIGRATIONS, broken))
    with pytest.raises(MigrationError, match="half good"):
        await store.start()
    await store.close()
    assert "extra" not in _tables(db_path)  # the step's first statement did not land either
    async with Store(db_path) as s:
        assert s.applied_migrations == []  # the good steps before it were kept
        assert s.schema_version == SCHEMA_VERSION


# -- inbound and group commit --------------------------------------------------------------------


async def test_a_repeated_inbound_message_is_a_no_op(store: Store) -> None:
    event = inbound("wamid.A", text="first")
    assert await store.record_inbound(event) is True
    assert await store.record_inbound(event.model_copy(update={"raw": {"changed": 1}})) is False
    # Concurrent duplicates (one batch): exactly one wins.
    results = await asyncio.gather(*(store.record_inbound(inbound("wamid.B")) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    messages = await store.get_messages(chat())
    assert [(m.id, m.text) for m in messages] == [("wamid.A", "first"), ("wamid.B", "hi")]
    assert messages[0].raw == event.raw


async def test_concurrent_writes_share_commits_and_resolve_after_them(db_path: Path) -> None:
    async with Store(db_path, batch_interval_s=0.05) as store:
        probe = duckdb.connect(str(db_path))  # another connection sees committed data only
        visible_when_resolved: list[bool] = []

        def check(wamid: str) -> None:
            row = probe.execute("SELECT count(*) FROM messages WHERE id = ?", [wamid]).fetchone()
            visible_when_resolved.append(row == (1,))

        tasks = []
        for i in range(200):
            task = asyncio.create_task(store.record_inbound(inbound(f"wamid.{i}", user=f"1{i}")))
            task.add_done_callback(lambda _t, w=f"wamid.{i}": check(w))
            tasks.append(task)
        assert await asyncio.gather(*tasks) == [True] * 200
        probe.close()
        stats = store.stats
        assert stats.writes == 200
        assert stats.commits <= 20  # group commit: far fewer transactions than writes
        assert stats.largest_batch > 1
        assert visible_when_resolved == [True] * 200
        assert await store.count_messages() == 200
        assert await store.count_chats() == 200


async def test_one_bad_write_in_a_batch_fails_alone(db_path: Path) -> None:
    async with Store(db_path, batch_interval_s=0.2) as store:
        good = [store.record_outbound(outbound(f"o{i}")) for i in range(10)]
        bad_row = store.record_outbound(outbound("negative-part", part=-1))  # CHECK fails
        unknown = store.note_attempt("no-such-outbound")  # raises inside the batch
        results = await asyncio.gather(*good, bad_row, unknown, return_exceptions=True)
        assert results[:10] == [True] * 10
        assert isinstance(results[10], StoreWriteError)
        assert "part" in str(results[10])
        assert isinstance(results[11], UnknownOutboundError)
        assert await store.count_outbound() == 10
        assert await store.get_outbound("negative-part") is None
        stats = store.stats
        assert stats.failed_writes == 2
        assert stats.isolated_batches >= 1


async def test_the_event_loop_keeps_running_during_a_large_write(store: Store) -> None:
    ticks = 0
    running = True

    async def ticker() -> None:
        nonlocal ticks
        while running:
            ticks += 1
            await asyncio.sleep(0)

    turn = TurnRecord(turn_id="big", chat=chat(), started_at=1.0)
    items = [outbound(f"big:{i}", turn_id="big", part=i, text="x" * 200) for i in range(3000)]
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    recorded = await store.record_turn_results(turn, items)
    during = ticks - before
    running = False
    await ticking
    assert recorded == [True] * 3000
    # Had DuckDB run on the loop, the ticker could not have run while the write was awaited.
    assert during >= 10


async def test_close_applies_the_writes_queued_before_it(db_path: Path) -> None:
    store = Store(db_path, batch_interval_s=0.05)
    await store.start()
    tasks = [asyncio.create_task(store.record_inbound(inbound(f"w{i}"))) for i in range(50)]
    await asyncio.sleep(0)  # every task has queued its write
    await store.close()
    assert [t.result() for t in tasks] == [True] * 50
    async with Store(db_path) as again:
        assert await again.count_messages() == 50


async def test_calls_after_close_are_refused(db_path: Path) -> None:
    store = Store(db_path)
    with pytest.raises(StoreClosedError):
        await store.record_inbound(inbound("early"))
    await store.start()
    assert await store.ping()
    await store.close()
    await store.close()  # idempotent
    assert not await store.ping()
    with pytest.raises(StoreClosedError):
        await store.record_inbound(inbound("late"))
    with pytest.raises(StoreClosedError):
        await store.load_session(chat())


async def test_data_survives_close_and_reopen(db_path: Path, clock: FakeClock) -> None:
    async with Store(db_path, now=clock) as s:
        await s.record_inbound(inbound("wamid.1", name="Ana"))
        turn = TurnRecord(
            turn_id="t1",
            chat=chat(),
            agent="general",
            engine="scripted",
            input_ids=("wamid.1",),
            reply_ids=("t1:0",),
            tokens_in=12,
            tokens_out=3,
            latency_ms=40.5,
            started_at=clock.now,
            finished_at=clock.now + 0.04,
        )
        snap = SessionSnapshot(chat=chat(), agent="general", summary="said hi", state={"n": 1})
        await s.record_turn_results(turn, [outbound("t1:0", turn_id="t1")], snap)
        await s.mark_sent("t1:0", "wamid.out.1")
        await s.apply_status("wamid.out.1", "delivered", clock.now + 1, None)
    async with Store(db_path, now=clock) as s:
        session = await s.load_session(chat())
        assert session is not None
        assert (session.agent, session.summary, session.state) == ("general", "said hi", {"n": 1})
        assert await s.get_turn("t1") == turn
        record = await s.get_outbound("t1:0")
        assert record is not None
        assert (record.status, record.wamid) == ("delivered", "wamid.out.1")
        assert [m.id for m in await s.recent_messages(chat())] == ["wamid.1", "t1:0"]
        contact = await s.get_contact(chat())
        assert contact is not None and contact.profile_name == "Ana"


# -- reads ---------------------------------------------------------------------------------------


async def test_the_history_window_is_the_last_n_in_arrival_order(store: Store) -> None:
    expected: list[str] = []
    for i in range(30):  # same one-second timestamp for all: order must come from arrival
        await store.record_inbound(inbound(f"in{i}", at=1_750_000_000.0))
        await store.record_outbound(outbound(f"out{i}", created_at=1_750_000_000.0))
        expected += [f"in{i}", f"out{i}"]
    await store.record_inbound(inbound("other-chat", user="999"))
    window = await store.recent_messages(chat(), limit=50)
    assert [m.id for m in window] == expected[-50:]
    assert [m.direction for m in window[:2]] == ["in", "out"]
    older = await store.get_messages(chat(), limit=50, before=window[0].seq)
    assert [m.id for m in older] == expected[:10]
    assert await store.get_messages(chat(), limit=5, before=older[0].seq) == []


async def test_sessions_rebuild_from_chat_and_session_rows(store: Store, clock: FakeClock) -> None:
    assert await store.load_session(chat()) is None
    await store.record_inbound(inbound("w2", at=1_750_000_200.0))
    await store.record_inbound(inbound("w1", at=1_750_000_100.0))  # late, older: no step back
    session = await store.load_session(chat())
    assert session is not None
    assert session.last_inbound_at == 1_750_000_200.0
    assert (session.agent, session.handoff, session.summary, session.state) == (
        None,
        False,
        None,
        {},
    )
    await store.save_session(
        SessionSnapshot(chat=chat(), agent="faq", summary="asked about hours", state={"x": 1})
    )
    await store.update_chat(chat(), handoff=True)
    session = await store.load_session(str(chat()))
    assert session is not None
    assert (session.agent, session.handoff, session.summary) == ("faq", True, "asked about hours")
    assert session.last_inbound_at == 1_750_000_200.0
    await store.update_chat(chat(), agent=None, last_inbound_at=5.0)
    chat_row = await store.get_chat(chat())
    assert chat_row is not None
    assert (chat_row.agent, chat_row.handoff, chat_row.last_inbound_at) == (None, True, 5.0)


async def test_a_state_that_is_not_json_is_refused_at_the_call(store: Store) -> None:
    with pytest.raises(TypeError):
        await store.save_session(SessionSnapshot(chat=chat(), state={"x": object()}))
    assert store.stats.writes == 0


async def test_turns_mark_their_input_as_processed(store: Store) -> None:
    for wamid in ("a", "b", "c"):
        await store.record_inbound(inbound(wamid))
    assert [m.id for m in await store.pending_inbound(chat())] == ["a", "b", "c"]
    turn = TurnRecord(turn_id="t1", chat=chat(), input_ids=("a", "b"), started_at=1.0)
    reply = outbound("t1:0", turn_id="t1")
    assert await store.record_turn_results(turn, [reply]) == [True]
    assert [m.id for m in await store.pending_inbound(chat())] == ["c"]
    message = await store.get_message("a")
    assert message is not None and message.turn_id == "t1"
    # A retried turn records nothing twice; the turn record is replaced by the retry's.
    retried = turn.model_copy(update={"outcome": "error", "error": "engine down"})
    assert await store.record_turn_results(retried, [reply]) == [False]
    assert await store.get_turn("t1") == retried
    assert await store.count_turns(chat()) == 1
    assert [t.turn_id for t in await store.list_turns(chat())] == ["t1"]
    await store.record_turn(TurnRecord(turn_id="t2", chat=chat(), input_ids=("c",), started_at=2))
    assert await store.pending_inbound(chat()) == []
    assert await store.count("messages", direction="out") == 1


async def test_search_contacts_by_name_number_or_id(store: Store) -> None:
    await store.record_inbound(inbound("1", user="16505551234", name="Sheena Nelson"))
    await store.record_inbound(inbound("2", user="447700900123", name="Bob"))
    await store.record_inbound(inbound("3", user="5511999998888", bsuid="BR.777", name="Zé"))
    await store.upsert_contact(chat("16505551234"), phone="16505551234", seen_at=1.0)

    async def names(q: str) -> list[str | None]:
        return sorted(c.profile_name for c in await store.search_contacts(q) if c.profile_name)

    assert await names("sheena") == ["Sheena Nelson"]
    assert await names("NELSON") == ["Sheena Nelson"]
    assert await names("+1 (650) 555") == ["Sheena Nelson"]
    assert await names("7700") == ["Bob"]
    assert await names("br.777") == ["Zé"]
    assert await names("nobody") == []
    assert await store.search_contacts("   ") == []
    assert len(await store.search_contacts("5", limit=2)) == 2
    contact = await store.get_contact(chat("16505551234"))
    assert contact is not None
    assert contact.profile_name == "Sheena Nelson"  # a None in an update erased nothing
    assert contact.first_seen == 1.0


async def test_list_chats_most_recent_first(store: Store, clock: FakeClock) -> None:
    for user in ("1", "2", "3"):
        await store.record_inbound(inbound(f"w{user}", user=user))
        clock.advance(1)
    await store.update_chat(chat("1"), agent="faq")  # now the most recently updated
    assert [c.user for c in await store.list_chats()] == ["1", "3", "2"]
    assert [c.user for c in await store.list_chats(limit=1, offset=1)] == ["3"]
    with pytest.raises(ValueError, match="limit"):
        await store.list_chats(limit=0)
    with pytest.raises(ValueError, match="cannot count"):
        await store.count("nope")


# -- many chats' turns in one call (docs/hot-path.md) ------------------------------------------


def _call(turn_id: str) -> ToolCallRecord:
    return ToolCallRecord(turn_id=turn_id, idx=0, call_id="c1", name="x", result="{}", status="ok")


def _commit(user: str, turn_id: str, **turn: Any) -> TurnCommit:
    wamid = f"w-{turn_id}"
    record = TurnRecord(
        turn_id=turn_id, chat=chat(user), input_ids=(wamid,), started_at=1.0, **turn
    )
    return TurnCommit(
        record,
        inputs=(inbound_row(inbound(wamid, user=user), 1.0),),
        outbound=(outbound(f"{turn_id}:0", user=user, turn_id=turn_id),),
        session=SessionSnapshot(chat=chat(user), agent="assistant", last_inbound_at=5.0),
    )


async def test_many_turns_commit_in_one_transaction_with_their_inputs(store: Store) -> None:
    commits = [_commit(f"1650555{i:04d}", f"t{i}") for i in range(20)]
    before = store.stats.commits
    results = await store.commit_turns(commits)
    assert results == [[True]] * 20
    assert store.stats.commits - before == 1  # one DuckDB transaction for all of them
    for i in range(20):
        message = await store.get_message(f"w-t{i}")
        assert message is not None and message.turn_id == f"t{i}"  # input stored, consumed
        assert (await store.get_outbound(f"t{i}:0")) is not None
    # A retry of the same turns records nothing new.
    assert await store.commit_turns(commits) == [[False]] * 20
    assert await store.count_turns() == 20
    assert await store.count("messages", direction="in") == 20


async def test_a_bad_turn_in_a_batch_fails_alone(store: Store) -> None:
    good, later = _commit("16505550001", "ok1"), _commit("16505550002", "ok2")
    refused = _commit("16505550003", "bad-call")  # refused before it reaches the database
    refused = TurnCommit(refused.turn, refused.inputs, tool_calls=(_call("other"),))
    broken = _commit("16505550004", "bad-row", tokens_in=2**70)  # DuckDB refuses the BIGINT
    results = await store.commit_turns([good, refused, broken, later])
    assert results[0] == [True] and results[3] == [True]
    assert isinstance(results[1], ValueError)
    assert isinstance(results[2], StoreWriteError)
    assert {t for t in ("ok1", "ok2", "bad-call", "bad-row") if await store.get_turn(t)} == {
        "ok1",
        "ok2",
    }
    assert await store.get_message("w-bad-row") is None  # its input went with it
    assert await store.get_outbound("bad-row:0") is None


# -- the outcome of every inbound message (docs/errors.md, "The account") ----------------------


async def test_each_input_of_a_turn_gets_its_outcome_and_a_later_turn_settles_an_earlier_record(
    store: Store,
) -> None:
    user = "16505559001"
    first, second = inbound("o1", user=user), inbound("o2", user=user)
    held = inbound("o0", user=user)
    assert await store.record_inbound(held, "handed_off")  # stored while a person was in charge
    turn = TurnRecord(turn_id="t-o", chat=chat(user), input_ids=("o0", "o1", "o2"), started_at=1.0)
    rows = tuple(inbound_row(e, 1.0) for e in (first, second))
    assert await store.commit_turns([TurnCommit(turn, rows)]) == [[]]
    outcomes = {m.id: (m.outcome, m.outcome_ref) for m in await store.get_messages(chat(user))}
    assert outcomes == {
        "o0": ("coalesced", "t-o"),
        "o1": ("coalesced", "t-o"),
        "o2": ("answered", "t-o"),
    }
    handed = TurnRecord(
        turn_id="t-h", chat=chat(user), input_ids=("o3",), started_at=1.0, outcome="handoff"
    )
    await store.commit_turns([TurnCommit(handed, (inbound_row(inbound("o3", user=user), 1.0),))])
    assert (await store.get_message("o3")).outcome == "handed_off"  # type: ignore[union-attr]
    assert await store.unresolved_messages(older_than_s=0) == []


async def test_migration_6_gives_the_messages_of_an_older_file_their_outcome(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v5.duckdb"
    async with Store(path, migrations=MIGRATIONS[:5]) as old:
        assert old.schema_version == 5
    write_as_an_old_version(path, wamid="answered-before", turn_id="t-old")
    write_as_an_old_version(path, wamid="no-turn-before", user="16505550002")
    async with Store(path) as new:
        assert 6 in new.applied_migrations
        answered = await new.get_message("answered-before")
        recorded = await new.get_message("no-turn-before")
        assert answered is not None and (answered.outcome, answered.outcome_ref) == (
            "answered",
            "t-old",
        )
        assert recorded is not None and (recorded.outcome, recorded.outcome_ref) == (
            "recorded",
            None,
        )
        assert await new.unresolved_messages(older_than_s=0) == []
        assert await new.list_quarantined() == []


async def test_a_quarantined_message_is_settled_once_replayed_once_and_can_be_taken_up_again(
    store: Store,
) -> None:
    event = inbound("q1", user="16505559100")
    ids = (event.idempotency_key,)
    record = QuarantineRecord(
        quarantine_id=quarantine_id("commit_turn", ids),
        stage="commit_turn",
        reason="permanent",
        error="MessageValidationError: [100] bad 'to'",
        event_ids=ids,
        events="[]",
        chat=str(event.chat),
        created_at=1.0,
    )
    assert await store.quarantine(record, [event])
    assert not await store.quarantine(record, [event])  # the same item again: one record
    message = await store.get_message("q1")
    assert message is not None
    assert (message.outcome, message.outcome_ref) == ("quarantined", record.quarantine_id)

    assert await store.claim_quarantine_replay(record.quarantine_id)
    assert not await store.claim_quarantine_replay(record.quarantine_id)  # one replay gets through
    [unsettled] = await store.unresolved_messages(older_than_s=0)
    assert unsettled.message_id == "q1"
    await store.undo_quarantine_replay(record.quarantine_id)  # the inbox refused the replay
    assert await store.unresolved_messages(older_than_s=0) == []
    assert await store.claim_quarantine_replay(record.quarantine_id)
    # The replay failed the same way: quarantined again, under the same record, replayable.
    assert await store.quarantine(record, [event])
    [again] = await store.list_quarantined()
    assert again.replayed_at is None
    assert (await store.get_message("q1")).outcome == "quarantined"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="reason"):
        QuarantineRecord("q", "x", "whatever", "e", ("a",), "[]")
