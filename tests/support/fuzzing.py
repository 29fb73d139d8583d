"""Helpers for the fuzz tests: a digest of everything the DuckDB store holds (to prove a refused
request changed nothing) and the check that a refusal's body says what is wrong."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from whatsray.store import Store

__all__ = ["StoreDigest", "assert_refusal_names_the_problem", "store_digest"]

# Per table: (rows, a sum of the rows' hashes). Any insert, update or delete changes it.
StoreDigest = dict[str, tuple[int, int]]


async def store_digest(store: Store) -> StoreDigest:
    """Every table of the store (whatever tables the schema has today), counted and hashed."""

    def read(cur: duckdb.DuckDBPyConnection) -> StoreDigest:
        tables = [
            name
            for (name,) in cur.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
                " ORDER BY table_name"
            ).fetchall()
        ]
        counts = " UNION ALL ".join(
            f"SELECT '{table}', count(*), coalesce(sum(hash(t)), 0) FROM \"{table}\" AS t"
            for table in tables
        )
        rows = cur.execute(counts).fetchall()
        return {str(table): (int(count), int(hashed)) for table, count, hashed in rows}

    return await store._read(read)


def assert_refusal_names_the_problem(status: int, body: bytes, context: str = "") -> dict[str, Any]:
    """A 4xx whose body is a JSON object with a non-empty `message` (our `ErrorBody`) that says
    what is wrong: for a 422, it names the failing place (a body field, a parameter)."""
    assert 400 <= status < 500, (status, context)
    try:
        parsed = json.loads(body)
    except ValueError:
        raise AssertionError(f"{status} body is not JSON: {body[:300]!r} ({context})") from None
    assert isinstance(parsed, dict), (parsed, context)
    message = parsed.get("message")
    assert isinstance(message, str) and message.strip(), (parsed, context)
    assert isinstance(parsed.get("error"), str) and parsed["error"], (parsed, context)
    if status == 422:
        places = ("body field", "request body", "parameter", "request")
        assert any(place in message for place in places), (parsed, context)
        detail = parsed.get("detail")
        assert isinstance(detail, list) and detail, (parsed, context)
        for field in detail:
            assert field.get("loc") and field.get("msg"), (parsed, context)
    return parsed
