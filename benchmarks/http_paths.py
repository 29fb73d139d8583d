"""Requests per second and latency of the two HTTP paths the foundation provides, over loopback:

- `graph send`: GraphClient.send_text -> the emulator's Graph API (validate, rate-limit, record).
- `webhook POST`: a signed WhatsApp webhook -> the webhook receiver of `whatsray local` (size check,
  signature on the raw bytes, parse) -> 200.

Each server runs as its own process (uvicorn, one worker). The load comes from `wrk` (Debian
package `wrk`, one thread, C connections) when it is installed, else from a closed loop of C
asyncio clients in this process (`--driver python`; httpx tops out near 500 req/s on its own, so
that driver measures itself more than the server). Load and server share the cores: a floor.

Run:  .venv/bin/python benchmarks/http_paths.py [--seconds 5] [--concurrency 1 16 64] [--driver wrk]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.webhook_core import body as webhook_body
from tests.support.servers import free_port, wait_for_http
from whatsray.whatsapp.graph_client import GraphClient
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign

SECRET, TOKEN = "bench-secret", "bench-token"
PHONE_NUMBER_ID = "106540352242922"
RECIPIENTS = 2000  # spread sends so the pair rate (1 per 6 s per user) never binds


@contextmanager
def server(*args: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "WHATSRAY_APP_SECRET": SECRET, "WHATSRAY_ACCESS_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "whatsray.cli", *args, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/health")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


async def closed_loop(
    call: Callable[[int], Awaitable[None]], concurrency: int, seconds: float
) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call(next(counter))
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies


def row(path: str, concurrency: int, seconds: float, latencies: list[float]) -> str:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    rate = len(ordered) / seconds
    return f"| {path} | {concurrency} | {rate:,.0f} | {pct(0.50):.1f} | {pct(0.99):.1f} |"


async def bench_graph_send(url: str, concurrency: int, seconds: float) -> str:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        client = GraphClient(http, TOKEN, PHONE_NUMBER_ID, base_url=url)

        async def call(i: int) -> None:
            await client.send_text(f"+1555{i % RECIPIENTS:07d}", f"reply number {i}")

        await call(0)  # warm up the connection and the code path
        latencies = await closed_loop(call, concurrency, seconds)
    return row("graph send", concurrency, seconds, latencies)


async def bench_webhook_post(url: str, concurrency: int, seconds: float) -> str:
    raw = webhook_body(1, 0)
    headers = {SIGNATURE_HEADER: sign(SECRET, raw), "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

        async def call(i: int) -> None:
            response = await http.post("/webhook", content=raw, headers=headers)
            assert response.status_code == 200, response.text

        await call(0)
        latencies = await closed_loop(call, concurrency, seconds)
    return row("webhook POST", concurrency, seconds, latencies)


# wrk: Lua builds each request, so graph sends rotate recipients like the Python driver does.
_WRK_GRAPH = """
local i = 0
request = function()
  i = i + 1
  local body = string.format(
    '{"messaging_product":"whatsapp","to":"+1555%07d","type":"text","text":{"body":"reply %d"}}',
    i % RECIPIENTS, i)
  return wrk.format("POST", PATH, HEADERS, body)
end
"""
_WRK_STATIC = "request = function() return wrk.format('POST', PATH, HEADERS, BODY) end"
_WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %f %f %f %d\\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""


def _lua_table(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()) + "}"


def wrk_cell(
    path: str,
    url: str,
    route: str,
    headers: dict[str, str],
    body: bytes | None,
    concurrency: int,
    seconds: float,
) -> str:
    prelude = (
        f"RECIPIENTS = {RECIPIENTS}\nPATH = {json.dumps(route)}\nHEADERS = {_lua_table(headers)}\n"
    )
    if body is None:
        script = prelude + _WRK_GRAPH + _WRK_REPORT
    else:
        lua_body = "[==[" + body.decode() + "]==]"
        script = prelude + f"BODY = {lua_body}\n" + _WRK_STATIC + _WRK_REPORT
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "-s", file.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(file.name)
    match = re.search(r"RESULT (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", out)
    if match is None:
        raise RuntimeError("wrk printed no result:\n" + out)
    count, duration, p50, p99, errors = match.groups()
    rate = int(count) / float(duration)
    note = f" ({errors} errors)" if int(errors) else ""
    return f"| {path} | {concurrency} | {rate:,.0f}{note} | {float(p50):.1f} | {float(p99):.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--driver", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    args = parser.parse_args()
    print(f"driver: {args.driver}\n")
    print("| path | clients | req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    # Far above Meta's 1,000 mps so the limiter never answers 130429: this measures the server.
    emulator = ("emulator", "--no-window-enforcement", "--throughput-mps", "1000000")
    with server(*emulator) as url:
        graph_route = f"/v25.0/{PHONE_NUMBER_ID}/messages"
        graph_headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        for c in args.concurrency:
            if args.driver == "wrk":
                line = wrk_cell(
                    "graph send", url, graph_route, graph_headers, None, c, args.seconds
                )
            else:
                line = asyncio.run(bench_graph_send(url, c, args.seconds))
            print(line, flush=True)
    with server("webhook", "listen", "--verify-token", TOKEN, "--quiet") as url:
        raw = webhook_body(1, 0)
        hook_headers = {SIGNATURE_HEADER: sign(SECRET, raw), "Content-Type": "application/json"}
        for c in args.concurrency:
            if args.driver == "wrk":
                line = wrk_cell("webhook POST", url, "/webhook", hook_headers, raw, c, args.seconds)
            else:
                line = asyncio.run(bench_webhook_post(url, c, args.seconds))
            print(line, flush=True)


if __name__ == "__main__":
    main()
