"""The scheduler's part of the store: jobs and the exactly-once ledger of their runs.

Writes are few (a job created, a run recorded and settled), so each is one `SINGLE` write op on
the writer thread, not a bulk kind. `JobsMixin` adds the async methods to `Store`.
"""
# ruff: noqa: S608  (SQL text is built from the column constants of this module only)

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from duckdb import DuckDBPyConnection

from whatsray.store.job_records import JobKind, JobRecord, JobRunRecord, RunStatus
from whatsray.store.rows import dump_json, load_json_object

__all__ = ["JobsMixin"]

T = TypeVar("T")

_JOB_COLUMNS = (
    "id, name, kind, chat, payload, trigger, timezone, quiet_hours, misfire_grace_s, coalesce,"
    " enabled, active_since, created_at, updated_at"
)
_RUN_COLUMNS = (
    "run_id, job_id, scheduled_for, due_at, status, reason, result, entry_id, created_at,"
    " updated_at"
)
_FINAL = ("dispatched", "done", "skipped", "failed")


def _job_params(job: JobRecord) -> list[Any]:
    return [
        job.id,
        job.name,
        job.kind,
        job.chat,
        dump_json(job.payload),
        dump_json(job.trigger),
        job.timezone,
        None if job.quiet_hours is None else dump_json(job.quiet_hours),
        job.misfire_grace_s,
        job.coalesce,
        job.enabled,
        job.active_since,
        job.created_at,
        job.updated_at,
    ]


def _rows(cur: DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    result = cur.execute(sql, params)
    names = [column[0] for column in result.description or ()]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _job(row: dict[str, Any]) -> JobRecord:
    return JobRecord(
        **{
            **row,
            "payload": json.loads(row["payload"]),
            "trigger": json.loads(row["trigger"]),
            "quiet_hours": load_json_object(row["quiet_hours"]),
        }
    )


def _run(row: dict[str, Any]) -> JobRunRecord:
    return JobRunRecord(**{**row, "result": load_json_object(row["result"])})


# -- writes (on the writer thread) ---------------------------------------------------------------


def insert_job(conn: DuckDBPyConnection, job: JobRecord) -> bool:
    placeholders = ", ".join("?" * len(_job_params(job)))
    inserted = conn.execute(
        f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({placeholders})"
        " ON CONFLICT DO NOTHING RETURNING id",
        _job_params(job),
    ).fetchall()
    return bool(inserted)


def replace_job(conn: DuckDBPyConnection, job: JobRecord) -> bool:
    """Every column but the id and the creation time; False for an unknown id."""
    params = _job_params(job)
    updated = conn.execute(
        "UPDATE jobs SET name = ?, kind = ?, chat = ?, payload = ?, trigger = ?, timezone = ?,"
        " quiet_hours = ?, misfire_grace_s = ?, coalesce = ?, enabled = ?, active_since = ?,"
        " updated_at = ? WHERE id = ? RETURNING id",
        [*params[1:12], params[13], job.id],
    ).fetchall()
    return bool(updated)


def delete_job(conn: DuckDBPyConnection, job_id: str) -> bool:
    """The job and its run history; False for an unknown id."""
    deleted = conn.execute("DELETE FROM jobs WHERE id = ? RETURNING id", [job_id]).fetchall()
    if deleted:
        conn.execute("DELETE FROM job_runs WHERE job_id = ?", [job_id])
    return bool(deleted)


def insert_run(conn: DuckDBPyConnection, run: JobRunRecord) -> bool:
    """Insert-if-absent on the run id: the step that makes a run happen at most once."""
    inserted = conn.execute(
        f"INSERT INTO job_runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING RETURNING run_id",
        [
            run.run_id,
            run.job_id,
            run.scheduled_for,
            run.due_at,
            run.status,
            run.reason,
            None if run.result is None else dump_json(run.result),
            run.entry_id,
            run.created_at,
            run.updated_at,
        ],
    ).fetchall()
    return bool(inserted)


def settle_run(
    conn: DuckDBPyConnection,
    run_id: str,
    status: RunStatus,
    reason: str | None,
    result_json: str | None,
    entry_id: str | None,
    now: float,
) -> bool:
    """Move a pending run to its final status (once: a settled run stays as it is)."""
    updated = conn.execute(
        "UPDATE job_runs SET status = ?, reason = coalesce(?, reason), result = ?,"
        " entry_id = coalesce(?, entry_id), updated_at = ?"
        " WHERE run_id = ? AND status = 'pending' RETURNING run_id",
        [status, reason, result_json, entry_id, now, run_id],
    ).fetchall()
    return bool(updated)


def prune_runs(conn: DuckDBPyConnection, before: float) -> int:
    """Settled runs created before `before`, except each job's newest (the scheduler counts
    fire times from it: without it, old fire times would look due again)."""
    deleted = conn.execute(
        "DELETE FROM job_runs WHERE created_at < ? AND status <> 'pending'"
        " AND scheduled_for < (SELECT max(r.scheduled_for) FROM job_runs r"
        " WHERE r.job_id = job_runs.job_id) RETURNING run_id",
        [before],
    ).fetchall()
    return len(deleted)


# -- reads (on the reader thread) ----------------------------------------------------------------


def get_job(cur: DuckDBPyConnection, job_id: str) -> JobRecord | None:
    rows = _rows(cur, f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", [job_id])
    return _job(rows[0]) if rows else None


def list_jobs(
    cur: DuckDBPyConnection, kind: JobKind | None, chat: str | None, enabled: bool | None
) -> list[JobRecord]:
    rows = _rows(
        cur,
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE (CAST(? AS VARCHAR) IS NULL OR kind = ?)"
        " AND (CAST(? AS VARCHAR) IS NULL OR chat = ?)"
        " AND (CAST(? AS BOOLEAN) IS NULL OR enabled = ?) ORDER BY created_at, id",
        [kind, kind, chat, chat, enabled, enabled],
    )
    return [_job(row) for row in rows]


def list_runs(cur: DuckDBPyConnection, job_id: str, limit: int, offset: int) -> list[JobRunRecord]:
    rows = _rows(
        cur,
        f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE job_id = ?"
        " ORDER BY scheduled_for DESC LIMIT ? OFFSET ?",
        [job_id, limit, offset],
    )
    return [_run(row) for row in rows]


def pending_runs(cur: DuckDBPyConnection, job_id: str | None) -> list[JobRunRecord]:
    rows = _rows(
        cur,
        f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE status = 'pending'"
        " AND (CAST(? AS VARCHAR) IS NULL OR job_id = ?) ORDER BY scheduled_for, run_id",
        [job_id, job_id],
    )
    return [_run(row) for row in rows]


def last_run_at(cur: DuckDBPyConnection, job_id: str) -> float | None:
    row = cur.execute(
        "SELECT max(scheduled_for) FROM job_runs WHERE job_id = ?", [job_id]
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def activity_since(cur: DuckDBPyConnection, since: float) -> dict[str, int]:
    """What happened since `since`: the daily summary's numbers."""
    row = cur.execute(
        "SELECT"
        " (SELECT count(*) FROM messages WHERE direction = 'in' AND created_at >= ?),"
        " (SELECT count(*) FROM messages WHERE direction = 'out' AND created_at >= ?),"
        " (SELECT count(*) FROM turns WHERE started_at >= ?),"
        " (SELECT count(*) FROM turns WHERE started_at >= ? AND outcome = 'failed'),"
        " (SELECT count(*) FROM dead_letters WHERE created_at >= ?),"
        " (SELECT count(DISTINCT chat) FROM messages WHERE direction = 'in' AND created_at >= ?),"
        " (SELECT count(*) FROM job_runs WHERE created_at >= ? AND status IN (?, ?))",
        [since] * 7 + list(_FINAL[:2]),
    ).fetchone()
    assert row is not None
    names = (
        "messages_in",
        "messages_out",
        "turns",
        "failed_turns",
        "dead_letters",
        "active_chats",
        "job_runs",
    )
    return {name: int(value) for name, value in zip(names, row, strict=True)}


class JobsMixin:
    """The jobs and job-run methods of `Store` (its `_read`, `_write_op` and clock)."""

    _now: Callable[[], float]

    async def _read(self, fn: Callable[[DuckDBPyConnection], T]) -> T:
        raise NotImplementedError

    async def _write_op(self, op: Callable[[DuckDBPyConnection], T]) -> T:
        raise NotImplementedError

    async def insert_job(self, job: JobRecord) -> bool:
        """Add a job; False (and no change) if its id exists."""
        return await self._write_op(lambda conn: insert_job(conn, job))

    async def replace_job(self, job: JobRecord) -> bool:
        """Store every field of an existing job; False for an unknown id."""
        return await self._write_op(lambda conn: replace_job(conn, job))

    async def delete_job(self, job_id: str) -> bool:
        """Delete a job and its runs; False for an unknown id."""
        return await self._write_op(lambda conn: delete_job(conn, job_id))

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await self._read(lambda cur: get_job(cur, job_id))

    async def list_jobs(
        self,
        kind: JobKind | None = None,
        chat: str | None = None,
        enabled: bool | None = None,
    ) -> list[JobRecord]:
        """Jobs in creation order, filtered by kind, chat and enabled state when given."""
        return await self._read(lambda cur: list_jobs(cur, kind, chat, enabled))

    async def record_job_run(self, run: JobRunRecord) -> bool:
        """Insert-if-absent on `run.run_id`; False (and no change) for a run already recorded."""
        return await self._write_op(lambda conn: insert_run(conn, run))

    async def settle_job_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        reason: str | None = None,
        result: dict[str, Any] | None = None,
        entry_id: str | None = None,
    ) -> bool:
        """Settle a pending run; False if it was settled already (or is unknown)."""
        if status == "pending":
            raise ValueError("a run is settled to dispatched, done, skipped or failed")
        result_json = None if result is None else dump_json(result)
        now = self._now()
        return await self._write_op(
            lambda conn: settle_run(conn, run_id, status, reason, result_json, entry_id, now)
        )

    async def list_job_runs(
        self, job_id: str, limit: int = 50, offset: int = 0
    ) -> list[JobRunRecord]:
        """A job's runs, newest fire time first."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be >= 1 and offset >= 0 (got {limit}, {offset})")
        return await self._read(lambda cur: list_runs(cur, job_id, limit, offset))

    async def pending_job_runs(self, job_id: str | None = None) -> list[JobRunRecord]:
        """Runs recorded and not settled (all jobs' when `job_id` is None), oldest first."""
        return await self._read(lambda cur: pending_runs(cur, job_id))

    async def last_job_run_at(self, job_id: str) -> float | None:
        """The newest fire time recorded for the job (None: no run yet)."""
        return await self._read(lambda cur: last_run_at(cur, job_id))

    async def prune_job_runs(self, before: float) -> int:
        """Delete settled runs created before `before` (each job's newest is kept)."""
        return await self._write_op(lambda conn: prune_runs(conn, before))

    async def activity_since(self, since: float) -> dict[str, int]:
        """Counts since `since`: messages in/out, turns, failed turns, dead letters, active
        chats, dispatched or done job runs."""
        return await self._read(lambda cur: activity_since(cur, since))
