"""What the WhatsApp emulator itself costs per message, in CPU milliseconds of its own process.

One message is what the end-to-end benchmark does: `POST /emulator/inbound` (the emulator signs
and POSTs the inbound webhook), the Graph send of a reply, then the sent/delivered/read status
webhooks. The emulator runs as its own process (uvicorn on loopback, or `whatsray emulator` with
`--cli`); a tiny receiver in this process verifies every signature and answers 200. CPU is read
from /proc/<pid>/stat (utime + stime) around the measured messages, after a warm-up.

Run:  .venv/bin/python benchmarks/emulator_cost.py [--messages 1000] [--rates 80 200]
          [--batch-windows-ms 0 5] [--cli] [--profile /tmp/emulator.txt]
Prints a markdown table: one row per (rate, batching window).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from whatsray.whatsapp.signature import SIGNATURE_HEADER, verify_signature

SECRET = "bench-secret"
TOKEN = "bench-token"
PNID = "106540352242922"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The emulator process: the same app `whatsray local` serves, without console logging.
_SERVE = """
import sys, uvicorn
from whatsray.whatsapp.emulator import EmulatorConfig, create_emulator_app
config = EmulatorConfig.model_validate_json(sys.argv[1])
uvicorn.run(create_emulator_app(config), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning", access_log=False)
"""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Receiver:
    """A bare ASGI webhook endpoint: checks the signature, counts POSTs and events, answers 200."""

    posts: int = 0
    statuses: int = 0
    messages: int = 0
    refused: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            event = await receive()
            chunks.append(event.get("body", b""))
            if not event.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = dict(scope["headers"])
        signature = headers.get(SIGNATURE_HEADER.lower().encode(), b"").decode()
        status = 200
        if not verify_signature(SECRET, raw, signature):
            self.refused += 1
            status = 403
        else:
            self.posts += 1
            for entry in json.loads(raw)["entry"]:
                for change in entry["changes"]:
                    value = change["value"]
                    self.statuses += len(value.get("statuses", ()))
                    self.messages += len(value.get("messages", ()))
            self.changed.set()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def start_emulator(args: argparse.Namespace, window_ms: float | None, hook: str) -> tuple[Any, str]:
    port = free_port()
    if args.cli:
        command = [
            sys.executable, "-c",
            "import sys; from whatsray.cli import main; sys.exit(main(sys.argv[1:]))",
            "emulator", "--port", str(port), "--webhook-url", hook, "--app-secret", SECRET,
            "--access-token", TOKEN, "--throughput-mps", "1000",
        ]  # fmt: skip
        if window_ms is not None:
            command += ["--status-batch-window-ms", str(window_ms)]
    else:
        config: dict[str, Any] = {
            "app_secret": SECRET,
            "access_token": TOKEN,
            "webhook_url": hook,
            "throughput_mps": 1000,
        }
        if window_ms is not None:
            config["status_batch_window_s"] = window_ms / 1000
        command = [sys.executable, "-c", _SERVE, json.dumps(config), str(port)]
    # Out of the checkout's directory, so that PYTHONPATH can point the emulator at another tree.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    return process, f"http://127.0.0.1:{port}"


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                await http.get(f"{url}/emulator/health")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"emulator at {url} did not start")


async def one_message(http: httpx.AsyncClient, i: int, failures: list[str]) -> None:
    user = f"1555{i:07d}"
    inbound = await http.post(
        "/emulator/inbound", json={"from": user, "message": {"type": "text", "text": f"hi {i}"}}
    )
    if inbound.status_code != 200:
        failures.append(f"inbound {inbound.status_code}")
        return
    reply = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": user,
        "type": "text",
        "text": {"body": f"echo: hi {i}"},
    }
    sent = await http.post(
        f"/v25.0/{PNID}/messages", json=reply, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    if sent.status_code != 200:
        failures.append(f"send {sent.status_code}")


async def drive(http: httpx.AsyncClient, first: int, count: int, rate: float) -> list[str]:
    """Open loop: message k starts at k / rate seconds, whatever the answers' latency."""
    failures: list[str] = []
    start = time.perf_counter()
    tasks = []
    for k in range(count):
        delay = start + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one_message(http, first + k, failures)))
    await asyncio.gather(*tasks)
    return failures


async def wait_for(receiver: Receiver, statuses: int, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while receiver.statuses < statuses:
        receiver.changed.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"only {receiver.statuses} of {statuses} statuses arrived")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.changed.wait(), remaining)


async def measure(
    args: argparse.Namespace, rate: float, window_ms: float | None, hook_port: int
) -> str:
    receiver = Receiver()
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=hook_port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for this)
        await asyncio.sleep(0.01)
    process, url = start_emulator(args, window_ms, f"http://127.0.0.1:{hook_port}/webhook")
    profiler = None
    try:
        await wait_ready(url)
        limits = httpx.Limits(max_connections=256, keepalive_expiry=2.0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
            warm = min(args.warmup, args.messages)
            await drive(http, 0, warm, rate)
            await wait_for(receiver, 3 * warm)
            await http.post("/emulator/settle", json={"timeout": 60})
            posts0, statuses0 = receiver.posts, receiver.statuses
            if args.profile:
                profiler = subprocess.Popen(  # noqa: ASYNC220 (started once, not awaited)
                    [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record",
                     "--pid", str(process.pid), "--format", "raw", "-o", args.profile,
                     "--rate", "200"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                await asyncio.sleep(1.0)
            cpu0, wall0 = cpu_seconds(process.pid), time.perf_counter()
            failures = await drive(http, warm, args.messages, rate)
            driven = time.perf_counter() - wall0
            await wait_for(receiver, statuses0 + 3 * (args.messages - len(failures)))
            settled = await http.post("/emulator/settle", json={"timeout": 60})
            cpu1, wall1 = cpu_seconds(process.pid), time.perf_counter()
            assert settled.status_code == 200, settled.text
    finally:
        if profiler is not None:
            profiler.send_signal(2)
            profiler.wait(timeout=30)
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # a graceful shutdown that hangs is not measured here
            process.kill()
            process.wait()
        server.should_exit = True
        await serving
    n = args.messages
    cpu_ms = (cpu1 - cpu0) * 1000 / n
    posts = (receiver.posts - posts0) / n
    statuses = (receiver.statuses - statuses0) / n
    window = "default" if window_ms is None else f"{window_ms:g} ms"
    note = f" ({len(failures)} failed: {sorted(set(failures))})" if failures else ""
    if receiver.refused:
        note += f" ({receiver.refused} bad signatures)"
    return (
        f"| {rate:g} | {n / driven:.0f} | {window} | {n:,}{note} | {cpu_ms:.2f} | "
        f"{(cpu1 - cpu0) / (wall1 - wall0) * 100:.0f} % | {posts:.2f} | {statuses:.2f} |"
    )


async def bench(args: argparse.Namespace) -> list[str]:
    rows = []
    windows: list[float | None] = list(args.batch_windows_ms) or [None]
    for rate in args.rates:
        for window_ms in windows:
            rows.append(await measure(args, rate, window_ms, free_port()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000, help="measured messages per row")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rates", type=float, nargs="+", default=[80.0, 200.0])
    parser.add_argument(
        "--batch-windows-ms",
        type=float,
        nargs="*",
        default=[],
        help="status batching windows to compare (default: the emulator's default only)",
    )
    parser.add_argument("--cli", action="store_true", help="run `whatsray emulator` (console log)")
    parser.add_argument("--profile", help="py-spy raw (collapsed) stacks of the measured part")
    args = parser.parse_args()
    rows = asyncio.run(bench(args))
    mode = "`whatsray emulator` (console log)" if args.cli else "uvicorn, no console log"
    print(f"emulator: {mode}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}\n")
    print(
        "| target msg/s | achieved msg/s | status batch window | messages "
        "| emulator CPU ms/msg | emulator CPU | webhook POSTs/msg | statuses/msg |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for line in rows:
        print(line)


if __name__ == "__main__":
    main()
