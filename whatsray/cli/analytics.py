"""`whatsray analytics`: the conversation analytics of a time range, as a table (docs/analytics.md).

whatsray analytics                              the last 30 days, from the running whatsray
whatsray analytics --from 2026-11-01 --to 2026-12-01 --phone-number-id 1065...
whatsray analytics --json                       the summary as JSON (GET /api/analytics/summary)
whatsray analytics --export DIR                 DIR/<table>.parquet for every table (and daily)
whatsray analytics --db data/whatsray.duckdb    a stopped platform's file, read-only, same code

The URL is --url, else $WHATSRAY_MCP_API_URL (default http://127.0.0.1:8000); the token --token,
else $WHATSRAY_ADMIN_TOKEN, else (local mode) the one `whatsray local` generated. Times: unix
seconds or ISO dates (UTC). Exit status: 0; 1 when whatsray cannot be reached or the file cannot
be read; 2 for a bad option, a bad range or a refused token.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import httpx

from whatsray.admin.analytics_api import (
    MAX_DAILY_DAYS,
    MAX_SUMMARY_DAYS,
    parse_time,
    resolve_range,
)
from whatsray.admin.analytics_models import SummaryOut
from whatsray.admin.guard import AdminProblem
from whatsray.cli.connection import admin_api
from whatsray.settings import SettingsError
from whatsray.store import analytics

__all__ = ["add_analytics_commands", "render_summary"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
TIMEOUT_S = 60.0

_ROWS: tuple[tuple[str, str, str], ...] = (
    ("conversations", "conversations (24 h windows) started", "n"),
    ("conversations_closed", "  closed by now", "n"),
    ("contained", "  closed without a handoff", "n"),
    ("containment_rate", "containment", "%"),
    ("handed_off", "handed off", "n"),
    ("handoff_rate", "handoff rate", "%"),
    ("human_reply_median_s", "time to a human reply, median", "s"),
    ("inbound", "messages in", "n"),
    ("outbound", "messages out", "n"),
    ("turns", "turns", "n"),
    ("first_reply_median_s", "time to first reply, median", "s"),
    ("first_reply_p90_s", "time to first reply, p90", "s"),
    ("faq_unknown", "FAQ answered 'I don't know'", "n"),
    ("faq_unknown_rate", "FAQ 'I don't know' rate", "%"),
    ("dead_letters", "dead letters", "n"),
    ("template_fallbacks", "template fallbacks", "n"),
    ("windows_unanswered", "windows closed unanswered", "n"),
    ("opt_ins", "opt-ins", "n"),
    ("opt_outs", "opt-outs", "n"),
    ("opted_in_now", "opted in now", "n"),
)


class AnalyticsError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_analytics_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "analytics",
        help="conversation analytics: containment, handoffs, reply times... (and Parquet export)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="whatsray's base URL (default: settings)")
    parser.add_argument("--token", help="the admin token (default: $WHATSRAY_ADMIN_TOKEN)")
    parser.add_argument("--db", type=Path, help="read this DuckDB file (read-only) instead")
    parser.add_argument("--from", dest="start", help="start (default: 30 days before --to)")
    parser.add_argument("--to", dest="end", help="end, exclusive (default: now)")
    parser.add_argument("--phone-number-id", help="only this business number")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--export", type=Path, metavar="DIR", help="write DIR/<table>.parquet")
    parser.set_defaults(func=run_analytics_command)


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "%":
        return f"{value * 100:.1f} %"
    if kind == "s":
        return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"
    return str(value)


def _day(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds))


def render_summary(summary: SummaryOut) -> str:
    """The summary as an aligned two-column table, then its breakdowns."""
    values = summary.model_dump()
    number = summary.phone_number_id or "all business numbers"
    head = f"whatsray analytics, {_day(summary.from_)} to {_day(summary.to)} UTC, {number}"
    rows = [(label, _fmt(values[key], kind)) for key, label, kind in _ROWS]
    width = max(len(label) for label, _ in rows)
    lines = [head, ""] + [f"{label:<{width}}  {value:>10}" for label, value in rows]
    if summary.turns_by_agent:
        lines += ["", "turns by agent           turns  unknown  handoffs"]
        for agent in summary.turns_by_agent:
            lines.append(
                f"  {agent.agent:<20} {agent.turns:>7} {agent.faq_unknown:>8} {agent.handoffs:>9}"
            )
    for title, counts in (
        ("dead letters by reason", summary.dead_letters_by_reason),
        ("template fallbacks by purpose", summary.template_fallbacks_by_purpose),
    ):
        if counts:
            lines += ["", title] + [f"  {name:<26} {n:>5}" for name, n in counts.items()]
    return "\n".join(lines)


def _open_db(path: Path) -> duckdb.DuckDBPyConnection:
    if not path.is_file():
        raise AnalyticsError(f"no such file: {path}")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise AnalyticsError(
            f"cannot open {path} read-only ({exc}); a running whatsray holds it: use --url"
        ) from None


def _from_db(
    args: argparse.Namespace, conn: duckdb.DuckDBPyConnection
) -> tuple[SummaryOut, Callable[[str], bytes]]:
    now = time.time()
    begin, end = resolve_range(args.start, args.end, now, MAX_SUMMARY_DAYS)
    bounded = args.start is not None or args.end is not None
    number = args.phone_number_id
    if (
        number is not None
        and not conn.execute(
            "SELECT count(*) FROM chats WHERE phone_number_id = ?", [number]
        ).fetchall()[0][0]
    ):
        raise AnalyticsError(f"no chat on business number {number!r} in {args.db}", EXIT_CONFIG)
    summary = SummaryOut.model_validate(
        analytics.summary(conn, begin, end, args.phone_number_id, now)
    )

    def export(table: str) -> bytes:
        if table == "daily":
            start, stop = resolve_range(args.start, args.end, now, MAX_DAILY_DAYS)
            return analytics.export_parquet(conn, table, start, stop, args.phone_number_id, now)
        start_or_none, end_or_none = (begin, end) if bounded else (None, None)
        return analytics.export_parquet(
            conn, table, start_or_none, end_or_none, args.phone_number_id, now
        )

    return summary, export


def _from_api(args: argparse.Namespace, http: httpx.Client) -> tuple[SummaryOut, Any]:
    params = {
        name: value
        for name, value in (
            ("from", args.start),
            ("to", args.end),
            ("phone_number_id", args.phone_number_id),
        )
        if value is not None
    }
    summary = SummaryOut.model_validate_json(_get(http, "/api/analytics/summary", params))

    def export(table: str) -> bytes:
        return _get(http, f"/api/analytics/export/{table}", params)

    return summary, export


def _get(http: httpx.Client, path: str, params: dict[str, str]) -> bytes:
    url = str(http.base_url).rstrip("/")
    try:
        response = http.get(path, params=params)
    except httpx.TransportError as exc:
        raise AnalyticsError(
            f"cannot reach whatsray at {url} ({exc or type(exc).__name__})"
        ) from None
    if response.status_code != 200:
        try:
            message = response.json().get("message") or response.reason_phrase
        except (ValueError, AttributeError):
            message = response.reason_phrase
        code = EXIT_CONFIG if response.status_code in (401, 403, 422) else EXIT_FAILED
        raise AnalyticsError(f"whatsray at {url} answered {response.status_code}: {message}", code)
    return response.content


def _write_exports(directory: Path, export: Callable[[str], bytes]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for table in analytics.EXPORTS:
        path = directory / f"{table}.parquet"
        path.write_bytes(export(table))
        written.append(path)
    return written


def run_analytics_command(args: argparse.Namespace) -> int:
    try:
        for value, name in ((args.start, "from"), (args.end, "to")):
            if value is not None:
                parse_time(value, name)
        if args.db is not None:
            with _open_db(args.db) as conn:
                summary, export = _from_db(args, conn)
                return _show(args, summary, export)
        url, token = admin_api(args.url, args.token)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT_S) as http:
            summary, export = _from_api(args, http)
            return _show(args, summary, export)
    except AdminProblem as problem:
        print(f"error: {problem.body.message}", file=sys.stderr)
        return EXIT_CONFIG
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (AnalyticsError, duckdb.Error, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_FAILED)


def _show(args: argparse.Namespace, summary: SummaryOut, export: Callable[[str], bytes]) -> int:
    if args.json:
        print(summary.model_dump_json(by_alias=True, indent=2))
    else:
        print(render_summary(summary))
    if args.export is not None:
        for path in _write_exports(args.export, export):
            print(f"wrote {path}")
    return EXIT_OK
