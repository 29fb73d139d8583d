"""Ingest: signed webhook POSTs per second and p50/p99 latency, the platform beside a baseline.

- `whatsray`: the running app (`serve_app.build_app`) on a local Ray, its Serve ingress behind
  HAProxy (`RAY_SERVE_ENABLE_HA_PROXY=1`, `RAY_SERVE_THROUGHPUT_OPTIMIZED=1`; `--no-haproxy` for
  Serve's Python proxy). The session hosts are stopped once it is ready, so the backlog of turns
  does not compete for the cores: both sides then do exactly verify + dedupe + append.
- `baseline`: the same webhook routes and `InboxSink` in a plain FastAPI app under uvicorn (one
  process, no Ray), appending to other streams of the same Valkey.

Every POST carries a unique message id (over 1,000 chats), so each one does the real dedupe and
append. wrk has no HMAC: the bodies are signed here, written one per line to a file, and wrk's Lua
cycles through them (more requests than bodies would repeat ids, and the row says so).

Run:  .venv/bin/python benchmarks/ingest.py [--seconds 5] [--concurrency 1 16 64] [--no-haproxy]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.http_paths import closed_loop  # noqa: E402
from benchmarks.ray_platform import SECRETS, running_platform, stop_session_hosts, valkey  # noqa: E402
from benchmarks.webhook_core import body as webhook_body  # noqa: E402
from tests.support.servers import free_port, wait_for_http  # noqa: E402
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign  # noqa: E402

SECRET = SECRETS["app_secret"]
PARTITIONS = 2
CHATS = 1000
_TEMPLATE = webhook_body(1, 0).decode()
_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdC00000000"
_USER = "16505550000"
assert _WAMID in _TEMPLATE and _USER in _TEMPLATE


def signed_bodies(tag: str, count: int) -> list[tuple[str, str]]:
    """(signature, body) pairs: each body a new message id (tag + counter), 1,000 users."""
    out = []
    for i in range(count):
        raw = _TEMPLATE.replace(_WAMID, f"wamid.bench.{tag}.{i:09d}").replace(
            _USER, f"1650{i % CHATS:07d}"
        )
        out.append((sign(SECRET, raw.encode()), raw))
    return out


# The baseline server: this script, run again as a child process.
def serve_baseline(port: int, redis_url: str) -> None:
    import uvicorn
    from fastapi import FastAPI
    from starlette.routing import BaseRoute

    from whatsray.inbox import Inbox
    from whatsray.pipeline.ingest import InboxSink
    from whatsray.whatsapp.webhook_receiver import webhook_routes

    # Other streams than the platform's, so its session hosts never see these entries.
    inbox = Inbox.from_url(redis_url, partitions=PARTITIONS, stream_prefix="bench-baseline")
    routes: list[BaseRoute] = [
        *webhook_routes(
            app_secret=SECRET, verify_token=SECRETS["verify_token"], on_events=InboxSink(inbox)
        )
    ]
    app = FastAPI(routes=routes)
    app.add_api_route("/health", lambda: {"status": "ok"})
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@contextmanager
def baseline_server(redis_url: str) -> Iterator[str]:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-baseline", str(port), redis_url],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/health", timeout=60)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=30)


# Drivers: each returns (requests, seconds, p50 ms, p99 ms, errors).
_WRK_LUA = """
local reqs, n, i = {}, 0, 0
init = function(args)
  for line in io.lines(FILE) do
    local tab = line:find("\\t", 1, true)
    n = n + 1
    reqs[n] = wrk.format("POST", "/webhook", {["Content-Type"] = "application/json",
      ["X-Hub-Signature-256"] = line:sub(1, tab - 1)}, line:sub(tab + 1))
  end
end
request = function()
  i = i % n + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %f %f %f %d\\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""


def run_wrk(
    url: str, bodies: list[tuple[str, str]], clients: int, seconds: float
) -> tuple[int, float, float, float, int]:
    with tempfile.TemporaryDirectory(prefix="wrbench-wrk-") as tmp:
        data, script = Path(tmp) / "bodies.tsv", Path(tmp) / "ingest.lua"
        data.write_text("".join(f"{sig}\t{raw}\n" for sig, raw in bodies))
        script.write_text(f"FILE = {str(data)!r}\n" + _WRK_LUA)
        duration = f"-d{max(1, round(seconds))}s"
        out = subprocess.run(
            ["wrk", "-t1", f"-c{clients}", duration, "-s", str(script), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    match = re.search(r"RESULT (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", out)
    if match is None:
        raise RuntimeError("wrk printed no result:\n" + out)
    count, duration_s, p50, p99, errors = match.groups()
    return int(count), float(duration_s), float(p50), float(p99), int(errors)


def run_python(
    url: str, bodies: list[tuple[str, str]], clients: int, seconds: float
) -> tuple[int, float, float, float, int]:
    errors = 0

    async def drive() -> list[float]:
        nonlocal errors
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

            async def call(i: int) -> None:
                nonlocal errors
                sig, raw = bodies[i % len(bodies)]
                headers = {SIGNATURE_HEADER: sig, "content-type": "application/json"}
                response = await http.post("/webhook", content=raw, headers=headers)
                errors += response.status_code != 200

            return await closed_loop(call, clients, seconds)

    ordered = sorted(asyncio.run(drive()))

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return len(ordered), seconds, pct(0.50), pct(0.99), errors


def measure(
    target: str, url: str, clients: int, args: argparse.Namespace, cell: int
) -> tuple[str, float]:
    count = int(args.seconds * args.max_rate) + 100
    bodies = signed_bodies(f"{target.split()[0]}{cell}", count)
    driver = run_wrk if args.driver == "wrk" else run_python
    requests, duration, p50, p99, errors = driver(url, bodies, clients, args.seconds)
    rate = requests / duration
    notes = []
    if errors:
        notes.append(f"{errors} errors")
    if requests > count:
        notes.append(f"{requests - count} repeated ids")
    note = f" ({', '.join(notes)})" if notes else ""
    return f"| {target} | {clients} | {rate:,.0f}{note} | {p50:.1f} | {p99:.1f} |", rate


def warm_up(url: str, tag: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        for sig, raw in signed_bodies(f"warmup-{tag}", 50):
            http.post("/webhook", content=raw, headers={SIGNATURE_HEADER: sig})


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--driver", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    parser.add_argument("--no-haproxy", action="store_true", help="Serve's Python proxy instead")
    parser.add_argument(
        "--max-rate", type=float, default=8000.0, help="bodies per second of a cell to pre-sign"
    )
    parser.add_argument("--serve-baseline", nargs=2, metavar=("PORT", "REDIS_URL"), help="internal")
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(int(args.serve_baseline[0]), args.serve_baseline[1])
        return
    label = "whatsray (Serve, Python proxy)" if args.no_haproxy else "whatsray (Serve + HAProxy)"
    load_before = os.getloadavg()
    rows: list[str] = []
    rates: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="wrbench-") as tmp, valkey(Path(tmp)) as redis_url:
        with baseline_server(redis_url) as url:
            warm_up(url, "baseline")
            for cell, clients in enumerate(args.concurrency):
                line, rates["baseline", clients] = measure("baseline", url, clients, args, cell)
                rows.append(line)
        # The platform's actors see this Ray setting only if it is in the environment first.
        with running_platform(haproxy=not args.no_haproxy, redis_url=redis_url) as platform:
            stop_session_hosts(platform.partitions)
            warm_up(platform.api_url, "whatsray")
            for cell, clients in enumerate(args.concurrency):
                line, rates["whatsray", clients] = measure(
                    label, platform.api_url, clients, args, cell
                )
                rows.append(line)
    print(f"driver: {args.driver}; {os.cpu_count()} cores; load average (1, 5, 15 min) ", end="")
    print(f"before {_load(load_before)}, after {_load(os.getloadavg())}\n")
    print("| target | clients | req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    for clients in args.concurrency:
        ours, base = rates["whatsray", clients], rates["baseline", clients]
        print(f"{clients} clients: whatsray does {ours / base:.0%} of the baseline's req/s")


if __name__ == "__main__":
    main()
