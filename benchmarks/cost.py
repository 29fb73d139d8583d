"""The cost of a message, as the platform and the kernel count it (docs/hot-path.md).

- CPU: utime + stime of every process of the platform, from /proc/<pid>/stat, grouped by role
  (the process title Ray gives each actor: `ray::StoreActor`, `ray::SessionHost`, ...). The
  emulator and the load generator are separate processes and reported apart: they stand in for
  Meta and for users, and are not the platform's cost.
- Calls: every actor counts the calls its typed clients make (`whatsray.calls`, through
  `call_counts()`), so "Store calls per message" and "actor calls per message" are the
  platform's own count, not a reading of the code.
- DuckDB transactions: the Store's group-commit counter (`writer_stats()["commits"]`).

Snapshots are taken before and after a step; the difference over the step's messages is the
cost per message. On a cluster, messages per second per core is 1000 / (CPU ms per message).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Ray's own processes (no actor of ours): one group.
_RAY_SYSTEM = ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def role_of(command: str) -> str:
    """`ray::StoreActor.commit_turns` -> `StoreActor`; Serve replicas by deployment."""
    if "haproxy" in command:
        return "HAProxy"
    if "valkey" in command or "redis-server" in command:
        return "Valkey"
    if command.startswith("ray::"):
        title = command[5:].split()[0]
        if title.startswith("ServeReplica:"):
            return "ingress" if ":ingress" in title else title
        if title.startswith("ServeController") or title.startswith("ProxyActor"):
            return "Serve (controller, proxy)"
        return title.split(".")[0]
    if any(name in command for name in _RAY_SYSTEM):
        return "Ray (raylet, GCS, ...)"
    return "other"


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


@dataclass
class Snapshot:
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds so far
    calls: Counter[str] = field(default_factory=Counter)  # "target.method" -> count
    commits: int = 0  # DuckDB transactions

    def minus(self, before: Snapshot) -> Snapshot:
        cpu = {role: s - before.cpu.get(role, 0.0) for role, s in self.cpu.items()}
        return Snapshot(cpu, self.calls - before.calls, self.commits - before.commits)


class CostMeter:
    """Snapshots of the platform started by this process (its descendants, minus `apart`)."""

    def __init__(self, apart: dict[int, str]) -> None:
        self.apart = apart  # pid -> name: processes reported on their own (the emulator)
        self._seen: dict[int, str] = {}  # pid -> role: processes that ended keep their last CPU
        self._last: dict[int, float] = {}

    def snapshot(self) -> Snapshot:
        snap = Snapshot()
        for pid in descendants(os.getpid()):
            if pid not in self._seen:
                command = cmdline(pid)
                self._seen[pid] = self.apart.get(pid) or role_of(command)
            used = cpu_seconds(pid)
            if used:
                self._last[pid] = used
        for pid, used in self._last.items():
            role = self._seen[pid]
            snap.cpu[role] = snap.cpu.get(role, 0.0) + used
        snap.calls, snap.commits = _platform_counts()
        return snap


def _platform_counts() -> tuple[Counter[str], int]:
    """Every actor's call counts, summed, and the Store's transactions (needs a Ray driver)."""
    import ray

    import serve_app

    handles: list[Any] = []
    for info in ray.util.list_named_actors(all_namespaces=True):
        if info.get("namespace") != serve_app.NAMESPACE:
            continue
        if info["name"] == serve_app.LOCAL_SERVICES_NAME:
            continue
        handles.append(serve_app.find_actor(info["name"]))
    counts: Counter[str] = Counter()
    for result in ray.get([h.call_counts.remote() for h in handles], timeout=30):
        counts.update(result)
    store = serve_app.find_actor(serve_app.STORE_NAME)
    commits = int(ray.get(store.writer_stats.remote(), timeout=30)["commits"])
    return counts, commits


def cost_table(delta: Snapshot, messages: int, seconds: float) -> list[str]:
    """Markdown lines: CPU ms per message by role, then the calls per message."""
    per = max(messages, 1)
    platform = {r: s for r, s in delta.cpu.items() if r not in ("emulator", "other")}
    total = sum(platform.values())
    lines = ["| process | CPU ms per message |", "|---|---|"]
    for role, used in sorted(platform.items(), key=lambda kv: -kv[1]):
        if used * 1000 / per >= 0.005:
            lines.append(f"| {role} | {used * 1000 / per:.2f} |")
    lines.append(f"| **platform, all processes** | **{total * 1000 / per:.2f}** |")
    for role in ("emulator", "other"):
        if role in delta.cpu:
            name = "emulator (apart)" if role == "emulator" else "other (the driver's children)"
            lines.append(f"| {name} | {delta.cpu[role] * 1000 / per:.2f} |")
    ranked = sorted(delta.calls.items(), key=lambda kv: -kv[1])
    by_method = [f"{k} {v / per:.3f}" for k, v in ranked]
    store = {k: v for k, v in delta.calls.items() if k.startswith("store.")}
    reads = {k: v for k, v in store.items() if k.split(".", 1)[1] in STORE_READS}
    lines += [
        "",
        "| per message | count |",
        "|---|---|",
        f"| Store calls | {sum(store.values()) / per:.3f} |",
        f"| Store reads | {sum(reads.values()) / per:.3f} |",
        f"| Ray actor calls (all) | {sum(delta.calls.values()) / per:.3f} |",
        f"| DuckDB transactions per second | {delta.commits / max(seconds, 1e-9):.1f} |",
        "",
        "calls by method (per message): " + ", ".join(by_method),
    ]
    return lines


# Store methods that only read: a warm chat's turn must make none of them.
STORE_READS = frozenset(
    {
        "load_session",
        "recent_messages",
        "get_messages",
        "get_message",
        "get_chat",
        "get_contact",
        "get_outbound",
        "get_outbound_by_wamid",
        "pending_outbound",
        "get_dead_letter",
        "list_dead_letters",
        "list_chats",
        "search_contacts",
        "get_turn",
        "list_turns",
        "list_tool_calls",
        "count_messages",
        "handoff_chats",
        "opted_in_chats",
    }
)
