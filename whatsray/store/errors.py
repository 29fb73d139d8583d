"""Errors the store raises. Plain message-only exceptions, so they survive pickling (Ray)."""

from __future__ import annotations

__all__ = [
    "MigrationError",
    "SchemaTooNewError",
    "StoreClosedError",
    "StoreError",
    "StoreWriteError",
    "UnknownOutboundError",
]


class StoreError(Exception):
    """Base class of everything the store raises on purpose."""


class StoreClosedError(StoreError):
    """The store is not started, or is closing: the call was not applied."""

    is_transient = True  # a restarting store opens again (whatsray.retries)


class SchemaTooNewError(StoreError):
    """The database file was written by a newer whatsray (its schema version is unknown here)."""


class MigrationError(StoreError):
    """A migration step failed; its transaction was rolled back and the file is unchanged by it."""


class StoreWriteError(StoreError):
    """DuckDB refused a write (a constraint, a bad value...). Only that write failed."""


class UnknownOutboundError(StoreError, KeyError):
    """No outbound message with this id in the ledger.

    A `KeyError` too, like the in-memory ledger's, so callers catch the same thing from both.
    """

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; keep the plain message.
        return str(self.args[0]) if self.args else ""
