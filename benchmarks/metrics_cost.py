"""The cost of a metric record, through each binding of the metrics port (docs/metrics.md).

Every record goes through a `whatsray.metrics` instrument (labels checked) to its backend: Ray's
`ray.util.metrics` inside an actor, as the platform records, and prometheus-client in this
process, as runs without Ray record. The table gives CPU microseconds per record (process time,
so a busy machine changes it little) for a counter, a gauge and a histogram with the labels the
platform uses; multiply by the records of a message (docs/metrics.md, "What it costs") for the
metrics' share of a message's CPU.

Run:  .venv/bin/python benchmarks/metrics_cost.py [--records 100000]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from whatsray import metrics
from whatsray.metrics.prometheus import PrometheusBackend

KINDS = ("counter", "gauge", "histogram")


def record(kind: str) -> Callable[[int], None]:
    """`n` records of one kind, with the labels the platform gives that metric."""

    def counter(n: int) -> None:
        for _ in range(n):
            metrics.turns.inc(agent="assistant", outcome="ok")

    def gauge(n: int) -> None:
        for i in range(n):
            metrics.sessions_active.set(i, partition=0)

    def histogram(n: int) -> None:
        for i in range(n):
            metrics.turn_stage_seconds.observe((i % 100) / 100, stage="commit")

    return {"counter": counter, "gauge": gauge, "histogram": histogram}[kind]


def cost_us(kind: str, records: int) -> float:
    """CPU microseconds per record, in this process, with whatever backend is bound."""
    run = record(kind)
    run(1000)  # warm: the backend's instrument and the label set exist
    start = time.process_time()
    run(records)
    return (time.process_time() - start) / records * 1e6


class RayRecorder:
    """Records in a Ray actor, as every actor of the platform does."""

    def __init__(self) -> None:
        from actors.metrics import RayMetricsBackend

        metrics.use(RayMetricsBackend())

    def cost_us(self, kind: str, records: int) -> float:
        return cost_us(kind, records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000, help="per kind and binding")
    args = parser.parse_args()

    metrics.use(PrometheusBackend(CollectorRegistry()))
    local = {kind: cost_us(kind, args.records) for kind in KINDS}

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 * 1024**2)
    try:
        actor = ray.remote(num_cpus=0)(RayRecorder).remote()
        in_ray = {kind: ray.get(actor.cost_us.remote(kind, args.records)) for kind in KINDS}
    finally:
        ray.shutdown()

    print(f"CPU µs per record ({args.records:,} records of each kind)\n")
    print("| binding | " + " | ".join(KINDS) + " |")
    print("|---|" + "---|" * len(KINDS))
    for name, costs in (("ray.util.metrics (in an actor)", in_ray), ("prometheus-client", local)):
        print(f"| {name} | " + " | ".join(f"{costs[kind]:.2f}" for kind in KINDS) + " |")


if __name__ == "__main__":
    main()
