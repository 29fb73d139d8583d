"""Versioned schema migrations for the DuckDB file.

A migration is a version number and an ordered list of SQL statements. `migrate` applies, in
order, every migration newer than the file's version, each in its own transaction together with
the `schema_version` row that records it: a step either lands whole or not at all. A file that is
up to date gets nothing; a file newer than the code refuses to open (`SchemaTooNewError`) rather
than being written by code that does not know its tables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb

from whatsray.store.errors import MigrationError, SchemaTooNewError

__all__ = [
    "Migration",
    "check_migrations",
    "current_version",
    "migrate",
    "pending_migrations",
]

log = logging.getLogger(__name__)

VERSION_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " description VARCHAR NOT NULL,"
    " applied_at DOUBLE NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Versions must run 1, 2, 3... with no gap or repeat: a typo must not skip a step."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration versions must be 1..n in order; found {migration.version} "
                f"at position {expected}"
            )
        if not migration.statements:
            raise ValueError(f"migration {migration.version} has no statements")


def pending_migrations(current: int, migrations: Sequence[Migration]) -> list[Migration]:
    """The migrations to apply to a file at version `current` (0: empty file)."""
    check_migrations(migrations)
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise SchemaTooNewError(
            f"the database schema is version {current} but this whatsray knows only up to "
            f"{latest}: upgrade whatsray, or open a copy of the data made by this version"
        )
    return [m for m in migrations if m.version > current]


def current_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The file's schema version (0 for a new file); creates the version table if missing."""
    conn.execute(VERSION_TABLE_DDL)
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def migrate(
    conn: duckdb.DuckDBPyConnection,
    migrations: Sequence[Migration],
    *,
    now: Callable[[], float] = time.time,
) -> list[int]:
    """Bring the file up to the latest version; returns the versions applied (empty: none)."""
    todo = pending_migrations(current_version(conn), migrations)
    applied: list[int] = []
    for migration in todo:
        conn.execute("BEGIN TRANSACTION")
        try:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version VALUES (?, ?, ?)",
                [migration.version, migration.description, now()],
            )
            conn.execute("COMMIT")
        except duckdb.Error as exc:
            conn.execute("ROLLBACK")
            raise MigrationError(
                f"migration {migration.version} ({migration.description}) failed and was "
                f"rolled back: {exc}"
            ) from exc
        log.info("store schema now at version %d: %s", migration.version, migration.description)
        applied.append(migration.version)
    return applied
