"""The chaos soak: load on the whole platform while every kind of actor is killed, Valkey
restarts and "Meta" misbehaves; then what every user got back. All counts should be 0.

The load, the chaos and the counts are `tests/support/chaos/` (shared with the CI version,
`tests/integration/test_chaos_ray.py`, which runs it for 60 s); this script runs it for
`--minutes` on a local Ray (its `run_soak`: the app, its own Valkey with the AOF on, the emulator
as WhatsApp), prints the table, the chaos log, examples of each failure and the log lines that
name the lost or duplicated messages.

Run:  .venv/bin/python benchmarks/chaos.py [--minutes 10] [--rate 20] [--chats 200]

`--kill-all`: the `kill -9` of everything instead (`tests/support/kill_all.py`): `whatsray local`
as a user starts it, load, then SIGKILL of Ray (every process of this run), Valkey and the app
mid-load, `whatsray local` again on the same data dir: every message the webhook acknowledged is
answered exactly once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.chaos import ChaosPlan, evidence, ids_of, report, run_soak  # noqa: E402


def soak_on_ray(args: argparse.Namespace) -> int:
    for name, value in (("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0")):
        os.environ.setdefault(name, value)
    for name in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_THROUGHPUT_OPTIMIZED"):
        os.environ[name] = "0" if args.no_haproxy else "1"
    plan = ChaosPlan(
        seconds=args.minutes * 60,
        rate=args.rate,
        chats=args.chats,
        kills_per_kind=args.kills_per_kind,
        seed=args.seed,
        partitions=args.partitions,
    )
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="wrchaos-") as tmp,
        run_soak(Path(tmp), plan, progress=lambda line: print(line, flush=True)) as outcome,
    ):
        wanted = ids_of(outcome.lost + outcome.duplicated + outcome.reordered)
        logs = evidence(wanted[: args.evidence]) if wanted else []
    proxy = "Python proxy" if args.no_haproxy else "HAProxy"
    load = " ".join(f"{x:.2f}" for x in load_before)
    print(
        f"\n{proxy}; {os.cpu_count()} cores; {plan.partitions} partitions; "
        f"load average before {load}\n"
    )
    print("\n".join(report(outcome, plan)))
    if logs:
        print("\nlog lines naming the first failing messages:")
        print("\n".join(logs))
    return 0 if outcome.clean else 1


def run_kill_all(args: argparse.Namespace) -> int:
    from tests.support.kill_all import kill_all_soak

    return kill_all_soak(rate=args.rate, chats=args.chats, before_kill_s=args.before_kill_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="messages a second")
    parser.add_argument("--chats", type=int, default=ChaosPlan.chats)
    parser.add_argument("--kills-per-kind", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--evidence", type=int, default=6, help="messages to show log lines of")
    parser.add_argument("--no-haproxy", action="store_true", help="Serve's Python proxy")
    parser.add_argument("--kill-all", action="store_true", help="kill -9 of everything instead")
    parser.add_argument("--before-kill-s", type=float, default=20.0, help="--kill-all: load first")
    args = parser.parse_args()
    sys.exit(run_kill_all(args) if args.kill_all else soak_on_ray(args))


if __name__ == "__main__":
    main()
