"""The Store's own ceiling: what one DuckDB writer commits per second and per CPU millisecond.

No Ray: a real DuckDB file under a temporary directory, `whatsray.store.Store` in this process,
driven the way the StoreActor is by its callers:

- `Store.commit_turns` with batches of N turns (what a SessionHost sends): each turn has one
  inbound input, one reply (a pending outbound record) and a session snapshot, like
  `tests/integration/test_store.py::_commit`. Chats are warm: `--users` users are reused round
  after round, so after the first round the contact cache (`ContactsSeen`) skips their contacts.
- `Store.write_behind` with the matching writes of the outbox: one `SendResult` (the wamid) and 3
  `StatusWrite` (sent, delivered, read) per reply, in batches of the same N.

Before each measurement the file is filled (plain SQL, fast) to `--fills` messages in total
(half inbound, half outbound, with their outbound records and turns, statuses all "read"), so
that a cost growing with the tables shows: inserts should not grow, status updates (a lookup by
wamid, then a rewrite of the row) may.

Reported per fill and batch size, for each of the two calls: turns per second (one caller, one
call in flight, the Store's default group-commit linger), rows written per second, CPU ms per
turn and per DuckDB transaction (`time.process_time()` of the whole process: the writer thread,
the reader thread and the caller's event loop). A turn's full Store cost is the sum of both rows.

Run:  .venv/bin/python benchmarks/store_ceiling.py [--fills 100000 1000000]
          [--batches 1 10 50 200] [--turns 2000] [--users 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.store_helpers import PNID, chat, inbound, outbound  # noqa: E402
from whatsray.outbox.ledger import SendResult, StatusWrite  # noqa: E402
from whatsray.store import SessionSnapshot, Store, TurnCommit, TurnRecord  # noqa: E402
from whatsray.store.rows import inbound_row  # noqa: E402

# Rows one turn writes in commit_turns: inbound message, contact/chat touch, turn, outbound
# record, outbound message, session. The contact row is skipped for a warm chat (the cache).
COMMIT_ROWS_PER_TURN = 5
# write_behind: the wamid (outbound + message row), then 3 statuses, each rewriting both rows.
BEHIND_ROWS_PER_TURN = 8


def fill(path: Path, upto: int) -> int:
    """Add filler rows until `messages` holds `upto` rows (half in, half out); returns the count.
    Each filler turn has its inbound message, its reply (message + outbound record, "read", with
    a wamid) and its turn row, spread over 10,000 chats that the measured users never are."""
    with duckdb.connect(str(path)) as conn:
        have = conn.execute("SELECT count(*) FROM messages").fetchone()
        assert have is not None
        turns = max(0, (upto - int(have[0])) // 2)
        if turns == 0:
            return int(have[0])
        start = int(conn.execute("SELECT count(*) FROM turns").fetchone()[0])  # type: ignore[index]
        rng = f"range({start}, {start + turns})"
        c = f"'{PNID}:' || (20000000000 + (i % 10000))::VARCHAR"
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO messages (id, chat, direction, type, text, raw, wamid, status, turn_id,"
            " created_at, updated_at)"
            f" SELECT 'wamid.fill-in-' || i, {c}, 'in', 'text', 'hello ' || i,"
            " '{\"type\": \"text\"}', 'wamid.fill-in-' || i, 'received', 'fill-' || i,"
            f" 1.7e9 + i, 1.7e9 + i FROM {rng} t(i)"
        )
        conn.execute(
            "INSERT INTO messages (id, chat, direction, type, text, raw, wamid, status,"
            " status_history, turn_id, created_at, updated_at)"
            f" SELECT 'fill-' || i || ':0', {c}, 'out', 'text', 'echo ' || i, '{{}}',"
            " 'wamid.fill-out-' || i, 'read',"
            " [{'status': 'sent', 'changed_at': 1.7e9 + i, 'error_code': NULL::INTEGER},"
            "  {'status': 'read', 'changed_at': 1.7e9 + i, 'error_code': NULL::INTEGER}],"
            f" 'fill-' || i, 1.7e9 + i, 1.7e9 + i FROM {rng} t(i)"
        )
        conn.execute(
            "INSERT INTO outbound (outbound_id, chat, phone_number_id, recipient, body, turn_id,"
            " part, status, wamid, attempts, created_at, updated_at)"
            f" SELECT 'fill-' || i || ':0', {c}, '{PNID}', (20000000000 + (i % 10000))::VARCHAR,"
            " '{\"type\": \"text\"}', 'fill-' || i, 0, 'read', 'wamid.fill-out-' || i, 1,"
            f" 1.7e9 + i, 1.7e9 + i FROM {rng} t(i)"
        )
        conn.execute(
            "INSERT INTO turns (turn_id, chat, agent, engine, input_ids, reply_ids, tokens_in,"
            " tokens_out, latency_ms, outcome, started_at, finished_at)"
            f" SELECT 'fill-' || i, {c}, 'assistant', 'echo', ['wamid.fill-in-' || i],"
            f" ['fill-' || i || ':0'], 0, 0, 1.0, 'ok', 1.7e9 + i, 1.7e9 + i FROM {rng} t(i)"
        )
        conn.execute("COMMIT")
        conn.execute("CHECKPOINT")
        total = conn.execute("SELECT count(*) FROM messages").fetchone()
        assert total is not None
        return int(total[0])


@dataclass
class Measured:
    turns: int = 0
    rows: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    commits: int = 0

    def add(self, commits: int, wall_s: float, cpu_s: float) -> None:
        self.commits += commits
        self.wall_s += wall_s
        self.cpu_s += cpu_s

    def line(self, fill_rows: int, batch: int, call: str) -> str:
        per_turn = self.cpu_s * 1000 / max(self.turns, 1)
        per_tx = self.cpu_s * 1000 / max(self.commits, 1)
        return (
            f"| {fill_rows:,} | {batch} | {call} | {self.turns / self.wall_s:,.0f} "
            f"| {self.rows / self.wall_s:,.0f} | {per_turn:.3f} | {self.commits:,} "
            f"| {per_tx:.2f} |"
        )


class Workload:
    def __init__(self, users: int) -> None:
        self.users = [f"1650{n:07d}" for n in range(users)]
        self.next = 0
        self.round = 0

    def batch(self, size: int) -> tuple[list[TurnCommit], list[str]]:
        self.round += 1
        commits, ids = [], []
        for k in range(size):
            user = self.users[self.next % len(self.users)]
            self.next += 1
            turn_id = f"r{self.round}-{k}"
            wamid = f"wamid.{turn_id}"
            record = TurnRecord(
                turn_id=turn_id,
                chat=chat(user),
                input_ids=(wamid,),
                reply_ids=(f"{turn_id}:0",),
                agent="assistant",
                engine="echo",
                started_at=time.time(),
            )
            commits.append(
                TurnCommit(
                    record,
                    inputs=(
                        inbound_row(
                            inbound(wamid, user=user, text=f"hello {turn_id}"), time.time()
                        ),
                    ),
                    outbound=(outbound(f"{turn_id}:0", user=user, turn_id=turn_id),),
                    session=SessionSnapshot(
                        chat=chat(user), agent="assistant", last_inbound_at=time.time()
                    ),
                )
            )
            ids.append(f"{turn_id}:0")
        return commits, ids


async def measure(store: Store, work: Workload, batch: int, turns: int) -> tuple[Measured, ...]:
    commit, behind = Measured(), Measured()
    for _ in range(max(1, turns // batch)):
        commits, ids = work.batch(batch)
        sent = [SendResult(i, f"wamid.out.{i}", 1) for i in ids]
        now = time.time()
        statuses = [
            StatusWrite(f"wamid.out.{i}", status, now + k)
            for k, status in enumerate(("sent", "delivered", "read"))
            for i in ids
        ]
        c0, w0, t0 = store.stats.commits, time.perf_counter(), time.process_time()
        results = await store.commit_turns(commits)
        commit.add(store.stats.commits - c0, time.perf_counter() - w0, time.process_time() - t0)
        assert all(r == [True] for r in results), results[:3]
        c0, w0, t0 = store.stats.commits, time.perf_counter(), time.process_time()
        await store.write_behind(sent, statuses)
        behind.add(store.stats.commits - c0, time.perf_counter() - w0, time.process_time() - t0)
        commit.turns += batch
        behind.turns += batch
        commit.rows += batch * COMMIT_ROWS_PER_TURN
        behind.rows += batch * BEHIND_ROWS_PER_TURN
    return commit, behind


async def run(args: argparse.Namespace, path: Path) -> list[str]:
    async with Store(path):  # migrate the new file
        pass
    rows: list[str] = []
    work = Workload(args.users)
    for target in args.fills:
        began = time.perf_counter()
        have = fill(path, target)
        print(f"filled to {have:,} messages in {time.perf_counter() - began:.1f} s", flush=True)
        async with Store(path) as store:
            # Warm the chats (contacts, chats, sessions exist; the contact cache holds them).
            await measure(store, work, min(200, args.users), args.users)
            for batch in args.batches:
                commit, behind = await measure(store, work, batch, max(batch, args.turns))
                rows.append(commit.line(have, batch, "commit_turns"))
                rows.append(behind.line(have, batch, "write_behind"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fills", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10, 50, 200])
    parser.add_argument("--turns", type=int, default=2000, help="measured turns per batch size")
    parser.add_argument("--users", type=int, default=1000, help="warm chats, reused")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wrstore-") as tmp:
        rows = asyncio.run(run(args, Path(tmp) / "whatsray.duckdb"))
    print(
        f"\none caller, one call in flight; {args.turns} turns per batch size; "
        f"{args.users} warm chats\n"
    )
    print(
        "| messages in file | batch (turns) | call | turns/s | rows/s | CPU ms/turn "
        "| transactions | CPU ms/transaction |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
