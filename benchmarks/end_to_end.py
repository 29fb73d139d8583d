"""End to end: a user's message in, the bot's reply accepted by "Meta", at a fixed rate.

The platform runs on a local Ray (Serve + HAProxy; `--no-haproxy` for the Python proxy) with the
agents of `benchmarks/agents.yaml`: the scripted echo engine, the `enqueue` policy (one turn per
message, nothing held back on purpose), no classifier. The emulator plays WhatsApp, its
throughput limit at Meta's maximum (1,000 mps) so that it does not throttle the replies.

An open-loop scheduler sends `POST /emulator/inbound` at each target rate for `--seconds`, spread
round-robin over `--chats` chats, each text unique; it never waits for an answer before the next
send. The emulator records every reply with its time (`GET /emulator/outbound`), so a message's
latency is that record's time minus the moment its inbound request was sent (same machine, same
wall clock). The emulator also sends the sent/delivered/read status webhooks for every reply, as
Meta does, so the ingress carries about four webhooks per message.

A rate is held when every message got its reply within `--drain-s` and p99 stayed under 1 s
(no backlog building up). By default every chat gets one message first, unmeasured, so the
measured turns run on active sessions (`--no-warmup` to measure cold activations too).

The cost of a message (`benchmarks/cost.py`, docs/hot-path.md): after each rate, once every
reply's statuses are applied ("read" in the store) and the platform is quiet, the table gives
platform CPU milliseconds per message (every process of the platform, summed from /proc; the
emulator runs as its own process, reported apart, with the platform in cluster mode against it
as against Meta; `--emulator-in-ray` puts it back in local mode's actor), Store calls and Ray
actor calls per message (the platform's own counters) and DuckDB transactions per second.

`--analytics-every S`: meanwhile, `GET /api/analytics/summary` (the last 30 days) every S seconds
through the ingress, as the owner's page would (docs/analytics.md); its latencies are reported.

Run:  .venv/bin/python benchmarks/end_to_end.py [--rates 50 100 200] [--seconds 5] [--chats 1000]
With the agent on the vLLM deployment (turn latency at a fixed rate):
      .venv/bin/python benchmarks/end_to_end.py --agents tests/vllm/agents.yaml --rates 1 2 4
          --seconds 20 --chats 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cost import CostMeter, Snapshot, cost_table  # noqa: E402
from benchmarks.ray_platform import SECRETS, running_platform  # noqa: E402

AGENTS = Path(__file__).resolve().parent / "agents.yaml"
HELD_P99_S = 1.0


@dataclass
class Step:
    rate: float
    sent_at: dict[str, list[float]] = field(default_factory=dict)  # user -> when each POST went
    failed: int = 0
    max_lag_s: float = 0.0  # how late the scheduler fired, at worst (the driver's own limit)
    latencies: list[float] = field(default_factory=list)
    cost: Snapshot | None = None  # what the step cost, all of it applied
    seconds: float = 0.0  # from the first send until the platform was quiet again
    statuses_ok: bool = False  # every reply's statuses reached the store


class Driver:
    def __init__(self, http: httpx.AsyncClient, chats: int) -> None:
        self.http = http
        self.users = [f"1555{n:07d}" for n in range(chats)]
        self.next_user = 0  # round-robin across steps: consecutive messages go to other chats
        self.since = 0  # outbound records already read

    async def run_step(self, step: Step, seconds: float, tag: str) -> None:
        count = max(1, round(step.rate * seconds))
        start = time.perf_counter() + 0.05
        tasks = []
        for i in range(count):
            due = start + i / step.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            step.max_lag_s = max(step.max_lag_s, time.perf_counter() - due)
            user = self.users[self.next_user % len(self.users)]
            self.next_user += 1
            tasks.append(asyncio.create_task(self._send(step, user, f"{tag} {i}")))
        await asyncio.gather(*tasks)

    async def _send(self, step: Step, user: str, text: str) -> None:
        body = {"from": user, "message": {"type": "text", "text": text}}
        step.sent_at.setdefault(user, []).append(time.time())
        try:
            response = await self.http.post("/emulator/inbound", json=body)
        except httpx.TransportError:
            response = None
        if response is None or response.status_code != 200:
            step.failed += 1

    async def collect(self, step: Step, drain_s: float) -> None:
        """Read the emulator's accepted replies until each sent message has one, or time is up.
        Replies are matched by their recipient, oldest message first (a model's reply need not
        repeat the text)."""
        waiting = {user: list(times) for user, times in step.sent_at.items()}
        deadline = time.monotonic() + drain_s
        while waiting and time.monotonic() < deadline:
            response = await self.http.get("/emulator/outbound", params={"since": self.since})
            records: list[dict[str, Any]] = response.json()
            for record in records:
                self.since = max(self.since, record["seq"])
                if record["outcome"] != "accepted":
                    continue
                user = str(record["body"].get("to", "")).lstrip("+")
                pending = waiting.get(user)
                if pending:
                    step.latencies.append(record["time"] - pending.pop(0))
                    if not pending:
                        del waiting[user]
            if waiting:
                await asyncio.sleep(0.2)


async def settle(http: httpx.AsyncClient, replies: int, drain_s: float) -> bool:
    """Until the emulator has no webhook left to deliver, every reply so far is "read" in the
    store and every outbox is idle: the step's cost is then all spent. False: not in time."""
    import ray

    import serve_app

    store = serve_app.find_actor(serve_app.STORE_NAME)
    outboxes = [
        serve_app.find_actor(info["name"])
        for info in ray.util.list_named_actors(all_namespaces=True)
        if info.get("namespace") == serve_app.NAMESPACE and info["name"].startswith("outbox-")
    ]
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:
        pending = (await http.get("/emulator/webhooks/pending")).json()["pending"]
        read = await store.count_messages.remote(direction="out", status="read")
        busy = sum(await asyncio.gather(*(o.in_flight.remote() for o in outboxes)))
        if pending == 0 and read >= replies and busy == 0:
            return True
        await asyncio.sleep(0.2)
    return False


def row(step: Step, drain_s: float) -> tuple[str, bool]:
    sent, got = sum(len(t) for t in step.sent_at.values()), len(step.latencies)
    ordered = sorted(step.latencies) or [float("nan")]

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    held = got == sent and step.failed == 0 and step.statuses_ok
    held = held and got > 0 and pct(0.99) < HELD_P99_S * 1000
    notes = [f"{step.failed} inbound failed"] if step.failed else []
    if got < sent:
        notes.append(f"{sent - got} unanswered after {drain_s:.0f} s")
    if not step.statuses_ok:
        notes.append("statuses not all applied")
    note = f" ({', '.join(notes)})" if notes else ""
    cpu = calls = store = "-"
    if step.cost is not None and got:
        platform = sum(v for r, v in step.cost.cpu.items() if r not in ("emulator", "other"))
        cpu = f"{platform * 1000 / got:.2f}"
        calls = f"{sum(step.cost.calls.values()) / got:.2f}"
        store = sum(v for k, v in step.cost.calls.items() if k.startswith("store."))
        store = f"{store / got:.2f}"
    line = (
        f"| {step.rate:g} | {sent:,} | {got:,}{note} | {pct(0.5):.1f} | {pct(0.99):.1f} "
        f"| {ordered[-1] * 1000:.1f} | {step.max_lag_s * 1000:.1f} | {cpu} | {store} | {calls} "
        f"| {'yes' if held else 'no'} |"
    )
    return line, held


async def poll_analytics(api_url: str, every_s: float, took: list[float]) -> None:
    """`GET /api/analytics/summary` every `every_s` until cancelled; each answer's time."""
    headers = {"Authorization": f"Bearer {SECRETS['admin_token']}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60) as http:
        while True:
            started = time.perf_counter()
            response = await http.get("/api/analytics/summary")
            response.raise_for_status()
            took.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, every_s - took[-1]))


async def bench(
    emulator_url: str,
    args: argparse.Namespace,
    meter: CostMeter,
    api_url: str = "",
    analytics_every: float = 0.0,
) -> tuple[list[str], list[Step]]:
    """The rates of `args`, in turn; with `analytics_every`, GET /api/analytics/summary at
    `api_url` every that many seconds meanwhile."""
    # Idle connections are dropped before uvicorn's 5 s keep-alive ends, or a send could reuse
    # one the server is closing (a ReadError that is the driver's fault, not the platform's).
    limits = httpx.Limits(max_connections=args.connections, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=emulator_url, limits=limits, timeout=60) as http:
        driver = Driver(http, args.chats)
        replies = 0
        if not args.no_warmup:
            warm = Step(rate=min(100.0, float(args.chats)))
            await driver.run_step(warm, args.chats / warm.rate, "warmup")
            await driver.collect(warm, args.drain_s)
            replies += len(warm.latencies)
            await settle(http, replies, args.drain_s)
        rows, steps, best = [], [], None
        took: list[float] = []
        poller = None
        if analytics_every:
            poller = asyncio.create_task(poll_analytics(api_url, analytics_every, took))
        for rate in args.rates:
            step = Step(rate=rate)
            before, started = meter.snapshot(), time.monotonic()
            await driver.run_step(step, args.seconds, f"rate{rate:g}")
            await driver.collect(step, args.drain_s)
            replies += len(step.latencies)
            step.statuses_ok = await settle(http, replies, args.drain_s)
            step.seconds = time.monotonic() - started
            step.cost = meter.snapshot().minus(before)
            line, held = row(step, args.drain_s)
            rows.append(line)
            steps.append(step)
            best = rate if held else best
        rows.append(f"\nhighest rate held: {best:g} msg/s" if best else "\nno rate held")
        if poller is not None:
            poller.cancel()
            [stopped] = await asyncio.gather(poller, return_exceptions=True)
            ordered = sorted(took) or [float("nan")]
            median, worst = ordered[len(ordered) // 2] * 1000, ordered[-1] * 1000
            failed = f"; failed: {stopped!r}" if isinstance(stopped, Exception) else ""
            rows.append(
                f"analytics summary every {analytics_every:g} s: {len(took)} requests,"
                f" median {median:.1f} ms, max {worst:.1f} ms{failed}"
            )
        return rows, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 100.0, 200.0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per rate")
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--drain-s", type=float, default=30.0, help="wait for replies this long")
    parser.add_argument("--connections", type=int, default=256, help="driver HTTP connections")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--no-haproxy", action="store_true", help="Serve's Python proxy instead")
    parser.add_argument(
        "--agents", type=Path, default=AGENTS, help="agents file (tests/vllm/agents.yaml: vLLM)"
    )
    parser.add_argument("--partitions", type=int, default=2, help="inbox partitions (hosts)")
    parser.add_argument(
        "--analytics-every", type=float, metavar="S", help="GET the analytics summary every S s"
    )
    parser.add_argument(
        "--emulator-in-ray", action="store_true", help="local mode: the emulator in an actor"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    with running_platform(
        haproxy=not args.no_haproxy,
        agents_file=args.agents,
        throughput_mps=1000,
        partitions=args.partitions,
        separate_emulator=not args.emulator_in_ray,
    ) as platform:
        apart = {platform.emulator_pid: "emulator"} if platform.emulator_pid else {}
        meter = CostMeter(apart)
        rows, steps = asyncio.run(
            bench(platform.emulator_url, args, meter, platform.api_url, args.analytics_every)
        )
    proxy = "Python proxy" if args.no_haproxy else "HAProxy"
    load = " ".join(f"{x:.2f}" for x in load_before)
    after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{proxy}; {args.agents.name}; {args.chats} chats; {args.seconds:g} s per rate; "
        f"{os.cpu_count()} cores; ",
        end="",
    )
    print(f"load average (1, 5, 15 min) before {load}, after {after}\n")
    print(
        "| rate msg/s | sent | answered | p50 ms | p99 ms | max ms | send lag ms "
        "| CPU ms/msg | Store calls/msg | actor calls/msg | held |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for step in steps:
        if step.cost is not None:
            print(f"\nThe cost of a message at {step.rate:g} msg/s ({step.seconds:.1f} s):\n")
            print("\n".join(cost_table(step.cost, len(step.latencies), step.seconds)))


if __name__ == "__main__":
    main()
