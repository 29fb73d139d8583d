"""Conversation analytics (docs/analytics.md) against a scripted history whose numbers are known
(tests/integration/analytics_history.py): the store's queries, the admin API (summary, daily,
Parquet export, bad parameters, the page's cookie login) and `whatsray analytics` (table,
--export, --db). A real DuckDB file; the API over ASGI or real HTTP (uvicorn on loopback)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from fastapi import FastAPI

from tests.integration.analytics_history import (
    DAY,
    EXPECTED,
    EXPECTED_DAYS,
    NOW,
    OTHER,
    PNID,
    RANGE,
    T0,
    write_history,
)
from tests.support.fuzzing import store_digest
from tests.support.loop_server import serve_in_loop
from whatsray.admin import create_admin_router
from whatsray.admin.analytics_api import COOKIE
from whatsray.admin.ports import AdminOutboxPort
from whatsray.cli import main as cli_main
from whatsray.store import Store
from whatsray.store.analytics import EXPORTS

pytestmark = pytest.mark.integration

TOKEN = "analytics-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUERY = {"from": str(RANGE[0]), "to": str(RANGE[1]), "phone_number_id": PNID}


def no_outbox(number: str) -> AdminOutboxPort:
    raise KeyError(f"the analytics tests send nothing ({number})")


def analytics_app(store: Store) -> FastAPI:
    app = FastAPI()
    app.include_router(
        create_admin_router(
            admin_token=TOKEN,
            store=store,
            outbox_for=no_outbox,
            phone_number_ids=[PNID, OTHER],
            now=lambda: NOW,
        )
    )
    return app


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    clock = [T0]
    async with Store(tmp_path / "whatsray.duckdb", now=lambda: clock[0]) as s:
        await write_history(s, clock)
        yield s


@pytest.fixture
async def api(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=analytics_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        yield client


async def test_the_summary_of_a_scripted_history(store: Store) -> None:
    summary = await store.analytics_summary(*RANGE, PNID)
    assert {name: summary[name] for name in EXPECTED} == EXPECTED


async def test_the_daily_series_of_a_scripted_history(store: Store) -> None:
    daily = await store.analytics_daily(*RANGE, PNID)
    assert [d["day"] for d in daily["days"]] == ["2025-06-16", "2025-06-17", "2025-06-18"]
    for name, per_day in EXPECTED_DAYS.items():
        assert [d[name] for d in daily["days"]] == per_day, name
    day0 = daily["days"][0]
    assert day0["first_reply_median_s"] == 5.0  # 2, 4, 10 and 6 s
    assert day0["containment_rate"] == 0.5  # A contained, B handed off (both closed)


async def test_one_business_number_or_all(store: Store) -> None:
    other = await store.analytics_summary(*RANGE, OTHER)
    assert (other["conversations"], other["inbound"], other["turns"]) == (1, 1, 1)
    assert (other["faq_turns"], other["faq_unknown"], other["first_reply_median_s"]) == (1, 0, 1.0)
    everything = await store.analytics_summary(*RANGE)
    assert everything["conversations"] == EXPECTED["conversations"] + 1
    assert everything["faq_unknown_rate"] == 0.4  # 2 of the 5 faq turns


async def test_the_api_answers_what_the_store_computes(
    store: Store, api: httpx.AsyncClient
) -> None:
    response = await api.get("/api/analytics/summary", params=QUERY, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {name: body[name] for name in EXPECTED} == EXPECTED
    assert (body["from"], body["to"], body["phone_number_id"]) == (*RANGE, PNID)
    # ISO dates mean 00:00 UTC: the same range.
    iso = {"from": "2025-06-16", "to": "2025-06-19T00:00:00Z", "phone_number_id": PNID}
    assert (await api.get("/api/analytics/summary", params=iso, headers=AUTH)).json() == body
    daily = (await api.get("/api/analytics/daily", params=QUERY, headers=AUTH)).json()
    assert daily == await store.analytics_daily(*RANGE, PNID)


@pytest.mark.parametrize(
    ("path", "params", "names"),
    [
        ("summary", {"from": "2025-06-19", "to": "2025-06-16"}, "from"),
        ("summary", {"from": "5", "to": "5"}, "from"),
        ("summary", {"from": "yesterday"}, "from"),
        ("summary", {"to": "2025-13-01"}, "to"),
        ("summary", {"to": "99999999999"}, "to"),
        ("summary", {"phone_number_id": "123"}, "phone_number_id"),
        ("summary", {"form": "2025-06-16"}, "form"),
        ("daily", {"from": "2020-01-01", "to": "2025-01-01"}, "from"),
        ("export/users", {}, "table"),
        ("export/daily", {"from": "x"}, "from"),
    ],
)
async def test_bad_parameters_are_refused_and_change_nothing(
    store: Store, api: httpx.AsyncClient, path: str, params: dict[str, str], names: str
) -> None:
    before = await store_digest(store)
    response = await api.get(f"/api/analytics/{path}", params=params, headers=AUTH)
    assert response.status_code == 422, response.text
    body = response.json()
    assert names in body["message"], body
    assert await store_digest(store) == before


async def test_the_parquet_export_reads_back_as_the_store_holds_it(
    store: Store, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    counts: dict[str, int] = {}
    for table in EXPORTS:
        response = await api.get(f"/api/analytics/export/{table}", params=QUERY, headers=AUTH)
        assert response.status_code == 200, (table, response.text)
        assert response.headers["content-type"] == "application/vnd.apache.parquet"
        path = tmp_path / f"{table}.parquet"
        path.write_bytes(response.content)
        counts[table] = duckdb.sql(f"SELECT count(*) FROM '{path}'").fetchall()[0][0]
    assert counts["turns"] == EXPECTED["turns"]
    assert counts["dead_letters"] == 1 and counts["tool_calls"] == 1 and counts["daily"] == 3
    # Messages: exactly the store's rows of the range and number, without the raw payloads.
    exported = duckdb.sql(f"SELECT * FROM '{tmp_path / 'messages.parquet'}' ORDER BY id")
    assert "raw" not in exported.columns

    def own(cur: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
        names = ", ".join(exported.columns)
        return cur.execute(
            f"SELECT {names} FROM messages WHERE created_at >= ? AND created_at < ?"
            " AND chat LIKE ? ORDER BY id",
            [*RANGE, f"{PNID}:%"],
        ).fetchall()

    assert exported.fetchall() == await store._read(own)
    daily = duckdb.sql(f"SELECT day, inbound FROM '{tmp_path / 'daily.parquet'}' ORDER BY day")
    assert [row[1] for row in daily.fetchall()] == EXPECTED_DAYS["inbound"]
    # Without a range: whole tables (both numbers).
    whole = await api.get("/api/analytics/export/turns", headers=AUTH)
    path = tmp_path / "all-turns.parquet"
    path.write_bytes(whole.content)
    assert duckdb.sql(f"SELECT count(*) FROM '{path}'").fetchall()[0][0] == 7


async def test_the_page_logs_in_with_a_cookie_that_opens_only_analytics_reads(
    store: Store, api: httpx.AsyncClient
) -> None:
    login = await api.get("/analytics")
    assert login.status_code == 401 and "<form" in login.text
    wrong = await api.post("/analytics/login", data={"token": "guess"})
    assert wrong.status_code == 403 and COOKIE not in wrong.headers.get("set-cookie", "")
    right = await api.post("/analytics/login", data={"token": TOKEN})
    assert right.status_code == 303 and right.headers["location"] == "/analytics"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie
    value = api.cookies[COOKIE]
    page = await api.get("/analytics")  # the client keeps the cookie from here on
    assert page.status_code == 200 and "drawChart" in page.text
    summary = await api.get("/api/analytics/summary", params=QUERY)
    assert summary.status_code == 200
    # Nowhere else: not a route that changes things, not another read.
    before = await store_digest(store)
    send = await api.post("/api/send-message", json={"to": "1001", "text": "hi"})
    assert send.status_code == 401
    assert (await api.get("/api/chats")).status_code == 401
    api.cookies.set(COOKIE, value[:-1] + ("1" if value.endswith("0") else "0"))
    forged = await api.get("/api/analytics/summary", params=QUERY)
    assert forged.status_code == 401
    assert await store_digest(store) == before


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(cli_main, list(argv))


async def test_the_cli_prints_the_table_and_exports_over_http(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with serve_in_loop(analytics_app(store)) as url:
        start, end = (datetime.fromtimestamp(t, UTC).date().isoformat() for t in RANGE)
        code = await _cli(
            "analytics", "--url", url, "--token", TOKEN, "--from", start, "--to", end,
            "--phone-number-id", PNID, "--export", str(tmp_path / "out"),
        )  # fmt: skip
        out = capsys.readouterr().out
        assert code == 0, out
        assert re.search(r"\ncontainment +66\.7 %\n", out), out
        assert re.search(r"\ntime to a human reply, median +15\.0 min\n", out), out
        assert re.search(r"\n  sales +1 +0 +1\n", out), out
        assert "rejected" in out and "reminder" in out
        for table in EXPORTS:
            assert (tmp_path / "out" / f"{table}.parquet").stat().st_size > 0
        refused = await _cli("analytics", "--url", url, "--token", "wrong")
        assert refused == 2
        assert "403" in capsys.readouterr().err


async def test_the_cli_reads_a_stopped_platforms_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = [T0]
    path = tmp_path / "whatsray.duckdb"
    async with Store(path, now=lambda: clock[0]) as s:
        await write_history(s, clock)
        from_store = await s.analytics_summary(*RANGE, PNID)
    argv = ["analytics", "--db", str(path), "--from", str(RANGE[0]), "--to", str(RANGE[1])]
    assert await _cli(*argv, "--phone-number-id", PNID, "--json") == 0
    printed = capsys.readouterr().out
    for name in ("conversations", "inbound", "turns", "first_reply_median_s", "dead_letters"):
        assert f'"{name}": {from_store[name]}' in printed
    assert await _cli(*argv, "--export", str(tmp_path / "x")) == 0
    turns = tmp_path / "x" / "turns.parquet"
    assert duckdb.sql(f"SELECT count(*) FROM '{turns}'").fetchall()[0][0] == 7
    capsys.readouterr()
    assert await _cli(*argv, "--phone-number-id", "123") == 2
    assert "no chat on business number '123'" in capsys.readouterr().err
    assert await _cli("analytics", "--db", str(path), "--from", "2025-06-19", "--to", "2025") == 2
    assert "must be before" in capsys.readouterr().err
    # Later days are empty, but there.
    assert await _cli("analytics", "--db", str(path), "--from", str(T0 + 10 * DAY)) == 0
