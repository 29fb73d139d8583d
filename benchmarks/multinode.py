"""End to end on a simulated multi-node Ray cluster: does the work spread as partitions grow?

A `ray.cluster_utils.Cluster` on this machine: a head node and `--workers` worker nodes, each
with `--node-cpus` CPUs and a custom resource of its own (`head`, `w0`, `w1`, ...). The platform
is placed on purpose through `WHATSRAY_PLACEMENT` (serve_app.py): the store, the outboxes, the
scheduler, the router, the agent workers and the ingress on the head; the session hosts spread
round-robin over the worker nodes (partition p on worker p % workers). For each partition count
(`--partitions 1 2 4 8`) a fresh cluster and platform start, and `benchmarks/end_to_end.py`'s
open-loop driver runs its rate steps (same driver, same "held" rule, same cost meter:
`benchmarks/cost.py`, summed over every node's processes, the emulator apart).

Every node shares this machine's cores: throughput cannot grow past what they give. What this
shows is where the work runs (the table of actors per node) and what each message costs, so
that a real cluster's size follows from CPU ms per message (cores = rate x ms / 1000).

Run:  .venv/bin/python benchmarks/multinode.py [--partitions 1 2 4 8] [--rates 5 10 20]
          [--seconds 5] [--chats 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cost import CostMeter  # noqa: E402
from benchmarks.end_to_end import AGENTS, Step, bench  # noqa: E402
from benchmarks.ray_platform import running_platform  # noqa: E402
from tests.support import ray_cluster  # noqa: E402

HEAD_KINDS = ("store", "outbox", "scheduler", "router", "agent_worker", "ingress")


def placement(workers: int) -> dict[str, Any]:
    """Everything but the session hosts on the head; session hosts over the workers."""
    spec: dict[str, Any] = {kind: {"head": 0.001} for kind in HEAD_KINDS}
    spec["session_host"] = [{f"w{i}": 0.001} for i in range(workers)]
    return spec


def start_cluster(workers: int, node_cpus: float) -> Any:
    """A head (resource `head`) and `workers` worker nodes (`w0`, `w1`, ...)."""
    resources = [{f"w{i}": 1.0} for i in range(workers)]
    return ray_cluster.start_cluster(resources, head_resources={"head": 1}, node_cpus=node_cpus)


def where_actors_ran() -> dict[str, list[str]]:
    """Node name (its custom resource) -> the actors on it, dead ones left out."""
    import ray

    nodes: dict[str, str] = {}
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        mine = [r for r in node["Resources"] if r == "head" or r.startswith("w")]
        nodes[node["NodeID"]] = mine[0] if mine else node["NodeID"][:8]
    found: dict[str, list[str]] = {name: [] for name in sorted(set(nodes.values()))}
    for node_id, names in ray_cluster.actors_by_node().items():
        found.setdefault(nodes.get(node_id, "?"), []).extend(names)
    return found


def summarise(names: list[str]) -> str:
    """`session-host-0, session-host-2` -> `session-host x2`; Serve's actors by their class."""
    kinds: Counter[str] = Counter()
    for name in names:
        base = name.rsplit("-", 1)[0] if name.rsplit("-", 1)[-1].isdigit() else name
        if base.startswith("outbox-"):
            base = "outbox"
        if "SERVE_REPLICA" in base or "ServeReplica" in base:
            base = "ingress replica"
        elif base.startswith("SERVE_") or "Serve" in base:
            base = "Serve " + base.removeprefix("SERVE_").lower().split("_")[0]
        kinds[base] += 1
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in sorted(kinds.items()))


def run_one(args: argparse.Namespace, partitions: int) -> tuple[list[Step], list[str], str]:
    cluster = start_cluster(args.workers, args.node_cpus)
    try:
        with running_platform(
            haproxy=args.haproxy,
            address=cluster.address,
            agents_file=args.agents,
            throughput_mps=1000,
            partitions=partitions,
            separate_emulator=True,
        ) as platform:
            placed = where_actors_ran()
            apart = {platform.emulator_pid: "emulator"} if platform.emulator_pid else {}
            _rows, steps = asyncio.run(bench(platform.emulator_url, args, CostMeter(apart)))
            highest = _rows[-1].strip()
    finally:
        with contextlib.suppress(Exception):  # running_platform already stopped its processes
            cluster.shutdown()
    layout = [f"| {partitions} | {node} | {summarise(names)} |" for node, names in placed.items()]
    return steps, layout, highest


def line(partitions: int, step: Step) -> str:
    ordered = sorted(step.latencies) or [float("nan")]

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    sent, got = sum(len(t) for t in step.sent_at.values()), len(step.latencies)
    held = got == sent and step.failed == 0 and step.statuses_ok and pct(0.99) < 1000
    cpu = store = "-"
    if step.cost is not None and got:
        platform = sum(v for r, v in step.cost.cpu.items() if r not in ("emulator", "other"))
        cpu = f"{platform * 1000 / got:.2f}"
        store = f"{step.cost.cpu.get('StoreActor', 0.0) * 1000 / got:.2f}"
    return (
        f"| {partitions} | {step.rate:g} | {sent:,} | {got:,} "
        f"| {pct(0.5):.1f} | {pct(0.99):.1f} | {cpu} | {store} | {'yes' if held else 'no'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rates", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per rate")
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--drain-s", type=float, default=30.0, help="wait for replies this long")
    parser.add_argument("--connections", type=int, default=64, help="driver HTTP connections")
    parser.add_argument("--workers", type=int, default=2, help="worker nodes besides the head")
    parser.add_argument("--node-cpus", type=float, default=1, help="CPUs each node declares")
    parser.add_argument("--no-warmup", action="store_true")
    # Serve's Python proxy by default: HAProxy's fixed ports (8404, 9101) clash on a shared box.
    parser.add_argument("--haproxy", action="store_true", help="Serve's HAProxy ingress")
    parser.add_argument("--agents", type=Path, default=AGENTS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Before the nodes start: their workers (the ingress replica starts the platform) inherit it.
    os.environ["WHATSRAY_PLACEMENT"] = json.dumps(placement(args.workers))
    logging.getLogger("ray").setLevel(logging.ERROR)
    results, layouts, highest = [], [], []
    for partitions in args.partitions:
        steps, layout, best = run_one(args, partitions)
        results += [line(partitions, step) for step in steps]
        layouts += layout
        highest.append(f"{partitions} partitions: {best}")
        print(f"done: {partitions} partitions, {best}", file=sys.stderr, flush=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{args.workers + 1} nodes x {args.node_cpus:g} CPUs declared, all on {os.cpu_count()} "
        f"cores; {args.chats} chats; {args.seconds:g} s per rate; load average after {load}\n"
    )
    print(
        "| partitions | rate msg/s | sent | answered | p50 ms | p99 ms "
        "| CPU ms/msg | Store CPU ms/msg | held |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(results))
    print("\n" + "\n".join(highest) + "\n")
    print("| partitions | node | actors |")
    print("|---|---|---|")
    print("\n".join(layouts))


if __name__ == "__main__":
    main()
