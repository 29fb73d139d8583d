"""The cost of a log line on Ray (docs/logging.md): in the actor that writes it, and in Ray's
processes that read every worker's log file and ship it (the log monitor, the GCS, the raylet,
the dashboard agent).

An actor set up as every platform actor is (`configure_logging`, JSON, its fields) writes
`--lines` lines shaped like the turn's line (`turn committed ...` with a wamid, a turn id, the
chat's hash and the partition). CPU is utime + stime of every process of this Ray from /proc,
before and after, once the log monitor has caught up; the table gives µs of CPU per line.

Run:  .venv/bin/python benchmarks/log_cost.py [--lines 20000] [--format json|text]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cost import cmdline, cpu_seconds, descendants, role_of


class Writer:
    def __init__(self, log_format: str) -> None:
        from whatsray.observability.logs import LogSetup, configure_logging

        configure_logging(LogSetup(format=log_format).for_process(actor="bench"))

    def write(self, lines: int) -> float:
        """CPU seconds this process spent writing `lines` lines."""
        import logging

        from whatsray.observability.logs import log_ids

        log = logging.getLogger("whatsray.bench")
        chat = "106540352242922:15551234567"
        start = time.process_time()
        for i in range(lines):
            ids = log_ids(wamid=f"wamid.{i}", turn_id=f"turn-{i}", chat=chat, partition=1)
            log.info("turn committed: agent %s, %s, %d part(s)", "assistant", "ok", 1, extra=ids)
        return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--format", choices=("json", "text"), default="json")
    parser.add_argument("--settle-s", type=float, default=8.0, help="for the log monitor")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=150 * 1024**2, log_to_driver=False
    )
    try:
        writer = ray.remote(num_cpus=0)(Writer).remote(args.format)
        ray.get(writer.write.remote(10))  # started, set up
        time.sleep(2)
        pids = descendants(os.getpid())
        before = {pid: cpu_seconds(pid) for pid in pids}
        in_writer = ray.get(writer.write.remote(args.lines))
        time.sleep(args.settle_s)
        by_role: dict[str, float] = {}
        for pid in pids:
            role = role_of(cmdline(pid))
            if "Writer" in cmdline(pid):
                role = "the actor writing"
            elif "log_monitor" in cmdline(pid):
                role = "Ray's log monitor"
            by_role[role] = by_role.get(role, 0.0) + cpu_seconds(pid) - before[pid]
    finally:
        ray.shutdown()

    per_line = {role: used / args.lines * 1e6 for role, used in by_role.items()}
    print(f"{args.lines:,} {args.format} lines from one actor; CPU µs per line\n")
    print("| process | CPU µs per line |")
    print("|---|---|")
    print(f"| the actor writing (its own clock) | {in_writer / args.lines * 1e6:.1f} |")
    for role, us in sorted(per_line.items(), key=lambda kv: -kv[1]):
        if us >= 0.5:
            print(f"| {role} | {us:.1f} |")
    print(f"| **all processes** | **{sum(per_line.values()):.1f}** |")


if __name__ == "__main__":
    main()
