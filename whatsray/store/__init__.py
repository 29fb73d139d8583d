"""The store: one owner of the DuckDB file (schema migrations, group commit, reads).

See docs/store.md. `Store` is the public class; the values it takes and returns are in
`whatsray.store.records`.
"""

from __future__ import annotations

from whatsray.store.errors import (
    MigrationError,
    SchemaTooNewError,
    StoreClosedError,
    StoreError,
    StoreWriteError,
    UnknownOutboundError,
)
from whatsray.store.job_records import JobKind, JobRecord, JobRunRecord, RunStatus
from whatsray.store.migrations import Migration
from whatsray.store.records import (
    ChatRecord,
    Contact,
    DeadLetter,
    MessageRecord,
    OutboundItem,
    OutboundRecord,
    SessionSnapshot,
    StatusChange,
    ToolCallRecord,
    TurnCommit,
    TurnRecord,
)
from whatsray.store.schema import MIGRATIONS, SCHEMA_VERSION
from whatsray.store.store import UNSET, Store
from whatsray.store.writer import WriterStats

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "UNSET",
    "ChatRecord",
    "Contact",
    "DeadLetter",
    "JobKind",
    "JobRecord",
    "JobRunRecord",
    "MessageRecord",
    "Migration",
    "MigrationError",
    "OutboundItem",
    "OutboundRecord",
    "RunStatus",
    "SchemaTooNewError",
    "SessionSnapshot",
    "StatusChange",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoreWriteError",
    "ToolCallRecord",
    "TurnCommit",
    "TurnRecord",
    "UnknownOutboundError",
    "WriterStats",
]
