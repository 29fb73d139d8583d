"""Session capacity: the memory one idle session costs a SessionHost.

A `SessionRegistry` (what each SessionHost actor wraps) runs in-process with fake hooks: no Ray,
no Redis, no store; only the session objects are measured. Each of N chats gets `--messages`
messages (parsed from real webhook bodies, answered by an echo turn, committed and acked), then
every session goes idle: what stays is the session, its state (the history window, the recent
event ids) and the registry's entry. The memory is measured twice, each in a fresh process:

- `tracemalloc`: Python allocations still held, after minus before, per session;
- RSS: resident memory of the process after minus before, per session (what the OS sees,
  allocator overhead and fragmentation included).

Run:  .venv/bin/python benchmarks/session_capacity.py [--sessions 10000 100000] [--messages 1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.webhook_core import body as webhook_body  # noqa: E402
from whatsray.session import (  # noqa: E402
    DoubleTextingPolicy,
    InboundEntry,
    SessionConfig,
    SessionHooks,
    SessionRegistry,
    SessionState,
    TurnRequest,
    TurnResult,
)
from whatsray.whatsapp.events import MessageEvent  # noqa: E402
from whatsray.whatsapp.parsing import parse_webhook  # noqa: E402

_TEMPLATE = webhook_body(1, 0).decode()
_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdC00000000"
_USER = "16505550000"
BATCH = 1000  # chats in flight at once: keeps the transient (tasks, events) small
WARMUP = 50  # chats served before the "before" reading: imports and caches are not sessions


def _message(chat: int, n: int) -> MessageEvent:
    raw = _TEMPLATE.replace(_WAMID, f"wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQ{chat:09d}{n:04d}")
    (event,) = parse_webhook(raw.replace(_USER, f"1650{chat:07d}").encode())
    assert isinstance(event, MessageEvent)
    return event


def _hooks() -> SessionHooks:
    async def load_state(chat: object) -> SessionState:
        return SessionState()  # a chat seen for the first time

    async def run_turn(request: TurnRequest, journal: object) -> TurnResult:
        return TurnResult(reply_parts=(f"echo: {request.inputs[-1].text}",), agent="assistant")

    async def nothing(*args: object) -> None:
        return None

    return SessionHooks(
        load_state=load_state,
        run_turn=run_turn,
        commit_turn=nothing,
        ack=nothing,
        on_status=nothing,
        record_messages=nothing,
        send_reply=nothing,
    )


async def _fill(registry: SessionRegistry, first: int, count: int, messages: int) -> None:
    for start in range(first, first + count, BATCH):
        for n in range(messages):  # message n of every chat of the batch, then the next one
            for chat in range(start, min(start + BATCH, first + count)):
                event = _message(chat, n)
                assert event.chat is not None
                await registry.deliver(InboundEntry(event.chat, event, f"{chat}-{n}"))
            await registry.wait_idle()


def _rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def _measure(sessions: int, messages: int, mode: str) -> dict[str, float]:
    if mode == "tracemalloc":
        tracemalloc.start()
    # enqueue, as in the end-to-end benchmark: coalescing would only add its quiet period.
    config = SessionConfig(default_policy=DoubleTextingPolicy.parse("enqueue"))
    registry = SessionRegistry(_hooks(), config)
    await _fill(registry, 0, WARMUP, messages)
    gc.collect()
    before = tracemalloc.get_traced_memory()[0] if mode == "tracemalloc" else _rss()
    started = time.perf_counter()
    await _fill(registry, WARMUP, sessions, messages)
    elapsed = time.perf_counter() - started
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if mode == "tracemalloc" else _rss()
    stats = registry.stats()
    assert stats.sessions == sessions + WARMUP and stats.busy == 0 and stats.unacked == 0
    assert stats.turns == (sessions + WARMUP) * messages, stats
    return {"bytes_per_session": (after - before) / sessions, "seconds": elapsed}


def _child(sessions: int, messages: int, mode: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(sessions), str(messages), mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--messages", type=int, nargs="+", default=[1], help="per chat")
    parser.add_argument(
        "--child", nargs=3, metavar=("SESSIONS", "MESSAGES", "MODE"), help="internal"
    )
    args = parser.parse_args()
    if args.child:
        sessions, messages, mode = int(args.child[0]), int(args.child[1]), args.child[2]
        print(json.dumps(asyncio.run(_measure(sessions, messages, mode))))
        return
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Python {sys.version.split()[0]}; load average (1, 5, 15 min) at start {load}\n")
    print(
        "| idle sessions | messages each | tracemalloc bytes/session | RSS bytes/session | fill s |"
    )
    print("|---|---|---|---|---|")
    for messages in args.messages:
        for sessions in args.sessions:
            traced = _child(sessions, messages, "tracemalloc")
            rss = _child(sessions, messages, "rss")
            print(
                f"| {sessions:,} | {messages} | {traced['bytes_per_session']:,.0f} "
                f"| {rss['bytes_per_session']:,.0f} | {rss['seconds']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
