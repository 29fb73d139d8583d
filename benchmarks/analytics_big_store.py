"""How long the analytics take on a big store: `--messages` messages (half in, half out, one
turn per inbound message) over `--chats` chats and `--days` days, written with plain SQL into a
real store file, then the summary, the daily series and a Parquet export of `messages`, timed
through the Store (its analytics cursor and thread), as `GET /api/analytics/*` calls them.

Run:  .venv/bin/python benchmarks/analytics_big_store.py [--messages 100000] [--chats 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from whatsray.store import Store  # noqa: E402

PNID = "106540352242922"
T0 = 1_750_032_000.0


def fill(conn: object, messages: int, chats: int, days: int) -> None:
    """Inbound messages spread over the days, each answered 2..12 s later by a turn."""
    pairs = messages // 2
    span = days * 86400.0
    params = {"n": pairs, "chats": chats, "span": span, "t0": T0, "pn": PNID}
    sql = [
        "CREATE TEMP TABLE gen AS SELECT i, $pn || ':1555' || lpad((i % $chats)::VARCHAR, 7, '0')"
        " AS chat, $t0 + (i * $span / $n) AS ts, 2 + (i % 11) AS delay FROM range($n) t(i)",
        "INSERT INTO chats (chat, phone_number_id, user_id, agent, created_at, updated_at)"
        " SELECT DISTINCT chat, $pn, split_part(chat, ':', 2), 'faq', $t0, $t0 FROM gen",
        "INSERT INTO messages (id, chat, direction, type, text, wamid, status, turn_id, outcome,"
        " created_at, updated_at) SELECT 'in' || i, chat, 'in', 'text', 'hi', 'in' || i,"
        " 'received', 't' || i, 'answered', ts, ts FROM gen",
        "INSERT INTO turns (turn_id, chat, agent, input_ids, reply_ids, tokens_in, tokens_out,"
        " latency_ms, outcome, started_at, finished_at, agent_outcome) SELECT 't' || i, chat,"
        " CASE WHEN i % 3 = 0 THEN 'sales' ELSE 'faq' END, ['in' || i], ['o' || i], 0, 0, 0,"
        " CASE WHEN i % 50 = 0 THEN 'handoff' ELSE 'ok' END, ts, ts + delay,"
        " CASE WHEN i % 7 = 0 THEN 'no_knowledge' ELSE 'ok' END FROM gen",
        "INSERT INTO outbound (outbound_id, chat, phone_number_id, recipient, body, turn_id, part,"
        " status, created_at, updated_at) SELECT 'o' || i, chat, $pn, split_part(chat, ':', 2),"
        " '{}', 't' || i, 0, 'read', ts + delay, ts + delay FROM gen",
        "INSERT INTO messages (id, chat, direction, type, text, status, turn_id, created_at,"
        " updated_at) SELECT 'o' || i, chat, 'out', 'text', 'hello', 'read', 't' || i,"
        " ts + delay, ts + delay FROM gen",
    ]
    for statement in sql:
        used = {k: v for k, v in params.items() if f"${k}" in statement}
        conn.execute(statement, used)  # type: ignore[attr-defined]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--chats", type=int, default=5000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        end = T0 + args.days * 86400.0
        async with Store(Path(tmp) / "big.duckdb", now=lambda: end + 86400.0) as store:
            started = time.perf_counter()
            await store._write_op(lambda conn: fill(conn, args.messages, args.chats, args.days))
            print(f"{args.messages:,} messages written in {time.perf_counter() - started:.1f} s")
            calls = {
                "summary (30 days)": lambda: store.analytics_summary(T0, end),
                "daily (30 days)": lambda: store.analytics_daily(T0, end),
                "export messages": lambda: store.export_table("messages"),
            }
            for name, call in calls.items():
                took = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    await call()
                    took.append(time.perf_counter() - started)
                took.sort()
                median, worst = took[len(took) // 2] * 1000, took[-1] * 1000
                print(f"{name}: median {median:.0f} ms, max {worst:.0f} ms")
            summary = await store.analytics_summary(T0, end)
            print(
                f"conversations {summary['conversations']}, turns {summary['turns']},"
                f" first reply median {summary['first_reply_median_s']} s"
            )


if __name__ == "__main__":
    asyncio.run(main())
