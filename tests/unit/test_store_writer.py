"""GroupCommitWriter against a fake connection: batching, isolation of a bad write, ordering by
kind, cancellation, and stop() flushing. The real DuckDB path is in tests/integration."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import duckdb
import pytest

from whatsray.store.errors import StoreClosedError, StoreWriteError
from whatsray.store.writer import GroupCommitWriter, WriteKind


class FakeConnection:
    """Records the statements the writer sends; COMMIT can be told to fail once."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.applied: list[Any] = []  # params applied by the recording kinds, in order
        self.committed: list[list[Any]] = []  # params of each committed transaction
        self._pending: list[Any] = []
        self.fail_next_commit = False
        self.closed = False

    def execute(self, sql: str) -> FakeConnection:
        self.statements.append(sql)
        if sql == "BEGIN TRANSACTION":
            self._pending = []
        elif sql == "COMMIT":
            if self.fail_next_commit:
                self.fail_next_commit = False
                raise duckdb.IOException("disk full")
            self.committed.append(self._pending)
        elif sql == "ROLLBACK":
            self._pending = []
        return self

    def close(self) -> None:
        self.closed = True


def _record(conn: Any, params: Sequence[Any]) -> list[Any]:
    conn.applied.extend(params)
    conn._pending.extend(params)
    if any(p == "bad" for p in params):
        raise ValueError("bad write")
    return [f"ok:{p}" for p in params]


RECORD = WriteKind("record", 10, _record)
LATER = WriteKind("later", 20, _record)


class Gate:
    """A write that blocks the writer thread until released, so a test can queue behind it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: Any) -> str:
        self.entered.set()
        assert self.release.wait(10)
        return "gate"


@pytest.fixture
def conn() -> FakeConnection:
    return FakeConnection()


def _writer(conn: FakeConnection, **kwargs: Any) -> GroupCommitWriter:
    writer = GroupCommitWriter(lambda: conn, **kwargs)  # type: ignore[arg-type, return-value]
    assert writer.start().result(5) is None
    return writer


def _hold(writer: GroupCommitWriter) -> tuple[Gate, Future[Any]]:
    gate = Gate()
    future = writer.submit_op(gate)
    assert gate.entered.wait(5)
    return gate, future


def test_writes_queued_together_share_one_commit(conn: FakeConnection) -> None:
    writer = _writer(conn, batch_interval_s=0.0)
    gate, first = _hold(writer)
    futures = [writer.submit(RECORD, i) for i in range(50)]
    committed_when_resolved: list[bool] = []
    for i, f in enumerate(futures):
        f.add_done_callback(
            lambda _f, i=i: committed_when_resolved.append(any(i in c for c in conn.committed))
        )
    gate.release.set()
    assert [f.result(5) for f in futures] == [f"ok:{i}" for i in range(50)]
    assert committed_when_resolved == [True] * 50
    assert first.result(5) == "gate"
    stats = writer.stats
    assert stats.writes == 51
    assert stats.commits == 2  # the gate's batch, then all 50 together
    assert stats.largest_batch == 50
    assert conn.committed[-1] == list(range(50))
    writer.stop().result(5)


def test_max_batch_caps_a_transaction(conn: FakeConnection) -> None:
    writer = _writer(conn, batch_interval_s=0.0, max_batch=8)
    gate, _ = _hold(writer)
    futures = [writer.submit(RECORD, i) for i in range(20)]
    gate.release.set()
    for f in futures:
        f.result(5)
    assert [len(c) for c in conn.committed[1:]] == [8, 8, 4]
    writer.stop().result(5)


def test_a_bad_write_fails_alone(conn: FakeConnection) -> None:
    writer = _writer(conn)
    gate, _ = _hold(writer)
    futures = [writer.submit(RECORD, p) for p in ("a", "bad", "c")]
    gate.release.set()
    assert futures[0].result(5) == "ok:a"
    assert futures[2].result(5) == "ok:c"
    with pytest.raises(ValueError, match="bad write"):
        futures[1].result(5)
    assert conn.committed[1:] == [["a"], ["c"]]  # retried one transaction each
    stats = writer.stats
    assert (stats.failed_writes, stats.isolated_batches) == (1, 1)
    writer.stop().result(5)


def test_a_failed_commit_is_retried_before_anything_resolves(conn: FakeConnection) -> None:
    writer = _writer(conn, batch_interval_s=0.0)
    gate, held = _hold(writer)
    conn.fail_next_commit = True  # the gate's batch: its COMMIT will fail
    gate.release.set()
    assert held.result(5) == "gate"  # retried alone, committed
    begin, commit, rollback = "BEGIN TRANSACTION", "COMMIT", "ROLLBACK"
    assert conn.statements == [begin, commit, rollback, begin, commit]
    assert writer.stats.commits == 1
    futures = [writer.submit(RECORD, p) for p in ("a", "b")]
    assert [f.result(5) for f in futures] == ["ok:a", "ok:b"]
    assert writer.stats.commits == 2
    writer.stop().result(5)


def test_database_errors_become_store_write_errors(conn: FakeConnection) -> None:
    writer = _writer(conn)

    def refuse(_conn: Any) -> None:
        raise duckdb.ConstraintException("duplicate key")

    future = writer.submit_op(refuse)
    with pytest.raises(StoreWriteError, match="ConstraintException: duplicate key"):
        future.result(5)
    writer.stop().result(5)


def test_kinds_apply_by_rank_arrival_order_within_a_kind(conn: FakeConnection) -> None:
    writer = _writer(conn, batch_interval_s=0.0)
    gate, _ = _hold(writer)
    futures = [
        writer.submit(LATER, "l1"),
        writer.submit(RECORD, "r1"),
        writer.submit(LATER, "l2"),
        writer.submit(RECORD, "r2"),
    ]
    gate.release.set()
    assert [f.result(5) for f in futures] == ["ok:l1", "ok:r1", "ok:l2", "ok:r2"]
    assert conn.committed[-1] == ["r1", "r2", "l1", "l2"]
    writer.stop().result(5)


def test_a_write_cancelled_before_it_ran_is_not_applied(conn: FakeConnection) -> None:
    writer = _writer(conn)
    gate, _ = _hold(writer)
    keep = writer.submit(RECORD, "keep")
    drop = writer.submit(RECORD, "drop")
    assert drop.cancel()
    gate.release.set()
    assert keep.result(5) == "ok:keep"
    writer.stop().result(5)
    assert "drop" not in conn.applied


def test_stop_applies_queued_writes_then_closes(conn: FakeConnection) -> None:
    writer = _writer(conn)
    gate, _ = _hold(writer)
    futures = [writer.submit(RECORD, i) for i in range(5)]
    closing_hook: list[bool] = []
    stopped = writer.stop(before_close=lambda c: closing_hook.append(conn.closed))
    with pytest.raises(StoreClosedError):
        writer.submit(RECORD, "late")
    gate.release.set()
    stopped.result(5)
    assert [f.result(0) for f in futures] == [f"ok:{i}" for i in range(5)]
    assert closing_hook == [False]  # the hook runs before the connection closes
    assert conn.closed
    assert not writer.alive


def test_a_failed_open_fails_start_and_refuses_writes() -> None:
    def broken() -> Any:
        raise OSError("no such directory")

    writer = GroupCommitWriter(broken)
    with pytest.raises(OSError, match="no such directory"):
        writer.start().result(5)
    with pytest.raises(StoreClosedError):
        writer.submit(RECORD, 1)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="batch_interval_s"):
        GroupCommitWriter(lambda: FakeConnection(), batch_interval_s=-1)  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommitWriter(lambda: FakeConnection(), max_batch=0)  # type: ignore[arg-type, return-value]
