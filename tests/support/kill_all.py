"""The `kill -9` of everything (`benchmarks/chaos.py --kill-all`): `whatsray local` as a user starts
it, load, then SIGKILL of every process of the run mid-load (Ray's GCS, raylet, workers and
HAProxy, the embedded Valkey, `serve run`, `whatsray local` itself), then `whatsray local` again
on the same data directory. Every message the webhook acknowledged (the emulator's inbound
answered 200: every copy got a 200) must be answered exactly once; a message it did not
acknowledge at most once.

The emulator is the one thing that is not the platform: Meta does not die with it. In local mode
it lives in the `local-services` actor, so the kill is done in two steps that the platform cannot
tell from one: every process of the run except that actor's is stopped at once (SIGSTOP), the
emulator's record of the replies it accepted is read, then everything is killed (SIGKILL). The
second start has a fresh emulator that knows no user, so the load's users' 24-hour windows are
opened in it the moment it answers (before the restarted outbox sends; a send refused with
131047 in the second run would show in the report as a refused send).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support import local_mode
from tests.support.chaos import ChaosPlan, Load, Message, account, chaos_agents, user_of
from tests.support.servers import free_port

START_TIMEOUT_S = 400.0


@contextmanager
def whatsray_local(
    data: Path, agents: Path, ports: dict[str, int]
) -> Iterator[subprocess.Popen[str]]:
    """`whatsray local` (the CLI, as a user runs it, `agents` its agents file) until its banner,
    its output read on (a full pipe would block it); SIGINT on the way out, unless it is already
    dead."""
    env = {
        "WHATSRAY_AGENTS_FILE": str(agents),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    metrics = ("--metrics-port", str(ports["metrics"]))
    with local_mode.whatsray_local(
        data, ports["http"], ports["emulator"], *metrics, env=env, start_timeout_s=START_TIMEOUT_S
    ) as process:
        assert process.stdout is not None
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield process


def descendants(root: int) -> dict[int, str]:
    """Every process below `root` (pid -> command line), and every process that names the same
    Ray session directory (none should have escaped the tree, but a kill must not miss one)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        found[pid] = cmdline(pid)
    sessions = {
        part.split("=", 1)[1]
        for line in found.values()
        for part in line.split()
        if part.startswith("--session-dir=") or part.startswith("--session_dir=")
    }
    if sessions:
        for stat in Path("/proc").glob("[0-9]*"):
            line = cmdline(int(stat.name)) if stat.name.isdigit() else ""
            if any(s in line for s in sessions) and int(stat.name) != os.getpid():
                found[int(stat.name)] = line
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def signal_all(pids: dict[int, str], sig: signal.Signals) -> None:
    for pid, line in pids.items():
        if line and cmdline(pid) == line:  # the same process, not a reused pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def open_windows(emulator: str, users: list[str], within_s: float = START_TIMEOUT_S) -> float:
    """As soon as the (new) emulator answers, open every user's 24-hour window; the seconds
    it took from the call."""
    start = time.monotonic()
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{emulator}/emulator/health", timeout=1).status_code == 200:
                break
        assert time.monotonic() - start < within_s, "the emulator never answered"
        time.sleep(0.02)
    with httpx.Client(base_url=emulator, timeout=30) as http:
        for user in users:
            http.post("/emulator/windows", json={"user": user, "open": True}).raise_for_status()
    return time.monotonic() - start


def kill_all_soak(*, rate: float = 20.0, chats: int = 50, before_kill_s: float = 20.0) -> int:
    for name, value in (("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0")):
        os.environ.setdefault(name, value)
    plan = ChaosPlan(seconds=before_kill_s, rate=rate, chats=chats, late_share=0.0)
    ports = {"http": free_port(), "emulator": free_port(), "metrics": free_port()}
    emulator = f"http://127.0.0.1:{ports['emulator']}"
    api = f"http://127.0.0.1:{ports['http']}"
    users = [user_of(c) for c in range(chats)]
    with tempfile.TemporaryDirectory(prefix="wrkillall-") as tmp:
        data = Path(tmp) / "data"
        agents = chaos_agents(Path(tmp))
        started = time.monotonic()
        with whatsray_local(data, agents, ports) as first:
            print(f"first start ready after {time.monotonic() - started:.0f} s", flush=True)
            load, before = asyncio.run(_load_then_freeze(plan, first.pid, emulator, api))
            print(f"killed everything: {len(before)} records seen before", flush=True)
        started = time.monotonic()
        opener = threading.Thread(target=open_windows, args=(emulator, users), daemon=True)
        opener.start()
        with whatsray_local(data, agents, ports) as second:
            print(f"second start ready after {time.monotonic() - started:.0f} s", flush=True)
            opener.join()
            after, not_quiet = _after_restart(emulator, data)
            signal_all({second.pid: cmdline(second.pid)}, signal.SIGINT)
    offset = max((r["seq"] for r in before), default=0)
    records = before + [{**r, "seq": r["seq"] + offset} for r in after]
    return _print(load.messages, records, before, after, not_quiet)


async def _load_then_freeze(
    plan: ChaosPlan, app_pid: int, emulator: str, api: str
) -> tuple[Load, list[dict[str, Any]]]:
    """Load for `plan.seconds`, then stop every process of the app but the emulator's, read what
    the emulator accepted, kill everything. What each message's delivery answered is in the
    load's messages (a delivery cut by the stop answers 502: not acknowledged)."""
    load = Load(plan, emulator, api, secret="")
    runner = asyncio.create_task(load.run(plan.seconds * 10))
    await asyncio.sleep(plan.seconds)
    pids = descendants(app_pid)
    pids[app_pid] = cmdline(app_pid)
    emulator_pids = {p for p, line in pids.items() if "LocalServices" in line}
    assert emulator_pids, "no local-services actor among the app's processes"
    signal_all({p: line for p, line in pids.items() if p not in emulator_pids}, signal.SIGSTOP)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await load.drain()  # the deliveries in flight end (answered, or 502 after their timeout)
    async with httpx.AsyncClient(base_url=emulator, timeout=60) as http:
        before = (await http.get("/emulator/outbound")).json()
    await load.aclose()
    signal_all(pids, signal.SIGKILL)
    signal_all(descendants(app_pid), signal.SIGKILL)
    return load, before


def _after_restart(emulator: str, data: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Wait until the restarted platform and its emulator are quiet; what it then accepted."""
    import ray

    import serve_app
    from tests.support.quiet import wait_quiet
    from whatsray.settings import load_settings

    ray.init(address="auto", namespace=serve_app.NAMESPACE, logging_level=logging.ERROR)
    try:
        services = serve_app.find_actor(serve_app.LOCAL_SERVICES_NAME)
        urls: Any = ray.get(services.urls.remote())
        settings = load_settings(data_dir=data, redis_url=urls["redis"])
        not_quiet = None
        with httpx.Client(base_url=emulator, timeout=60) as http:
            try:
                wait_quiet(settings, http, within_s=600)
            except AssertionError as exc:
                not_quiet = str(exc)[:2000]
            return http.get("/emulator/outbound").json(), not_quiet
    finally:
        ray.shutdown()


def _print(
    messages: dict[int, list[Message]],
    records: list[dict[str, Any]],
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    not_quiet: str | None,
) -> int:
    outcome = account(messages, records)
    acked = {m.wamid for sent in messages.values() for m in sent if m.first_status == 200}
    lost = [item for item in outcome.lost if any(str(w) in item for w in acked)]
    refused_after = refused_by_code(after)
    print(
        "\n| sent | acked (200) | lost (acked, no reply) | duplicated | duplicated within a turn "
        "| replies before the kill | replies after the restart |"
    )
    print("|---|---|---|---|---|---|---|")
    accepted = [r for r in before if r["outcome"] == "accepted" and r["kind"] == "message"]
    accepted_after = [r for r in after if r["outcome"] == "accepted" and r["kind"] == "message"]
    print(
        f"| {outcome.sent} | {len(acked)} | {len(lost)} | {len(outcome.duplicated)} "
        f"| {len(outcome.within_turn)} | {len(accepted)} | {len(accepted_after)} |"
    )
    print(f"\nsends refused after the restart, by code: {refused_after}")
    if not_quiet:
        print(f"NOT QUIET: {not_quiet}")
    for title, items in (
        ("lost", lost),
        ("duplicated", outcome.duplicated),
        ("duplicated within a turn", outcome.within_turn),
        ("not an echo", outcome.other_replies),
    ):
        if items:
            print(f"\n{title} ({len(items)}), first 10:")
            print("\n".join(f"  {item}" for item in items[:10]))
    clean = not lost and not outcome.duplicated and not outcome.within_turn and not not_quiet
    return 0 if clean else 1


def refused_by_code(records: list[dict[str, Any]]) -> dict[Any, int]:
    refused: dict[Any, int] = {}
    for record in records:
        if record["outcome"] != "accepted":
            key = (record["kind"], record.get("error_code"))
            refused[key] = refused.get(key, 0) + 1
    return refused
