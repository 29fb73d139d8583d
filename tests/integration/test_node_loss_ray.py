"""A worker node lost under load, on a multi-node Ray cluster (`tests/support/ray_cluster.py`):
a head and two worker nodes on this machine, the whole app on them, placed through
`WHATSRAY_PLACEMENT` (serve_app.py).

- On the head (custom resource `whatsray_head`): the store (it owns the DuckDB file there), the
  scheduler, the router, the local services (the emulator) and the ingress replica, next to
  Serve's controller and its one HTTP proxy. The webhook path never crosses a worker node, so
  every delivery is answered 200 while a worker is lost. (A replica on the lost worker would fail
  the webhook in flight on it; the emulator, like Meta, delivers it again later, after the
  chat's next message: the two are answered in the order they arrived, not the order sent.)
- On the workers (`whatsray_worker`, declared by BOTH workers): the session hosts, the outbox
  and the agent worker. Either worker can run any of them, so Ray restarts them on the survivor.

12 chats send numbered messages one after another through the emulator (real HTTP, signed
webhooks) to the `enqueue` echo agent (one message, one turn, one reply naming it). Mid-traffic
the worker holding the most session hosts is killed (`remove_node(allow_graceful=False)`: its
raylet and workers get SIGKILL, nothing is drained). Then every platform actor must be alive
again on a surviving node, the traffic goes on a while, and once the platform and the emulator
are quiet: every message answered exactly once and in order per chat, nothing unresolved, no
actor left on the lost node, and the moved partitions consumed entries appended after the move.

Guarantees 1, 2, 3, 6 and 8 of docs/architecture.md, section 1, across a node's loss.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.support.echo_agents import write_echo_agents
from tests.support.quiet import wait_quiet
from tests.support.ray_cluster import actor_states, actors_by_node, start_cluster
from tests.support.ray_serve import RunningWhatsray, running_whatsray
from whatsray.inbox import Inbox, partition_for
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID
from whatsray.whatsapp.events import ChatKey

PARTITIONS = 4
CHATS = 12
PACE_S = 0.5  # between two messages of one chat: 24 msg/s in all, under every rate limit
BEFORE_LOSS = 4  # messages each chat has sent when the node is lost
AFTER_BACK = 4  # messages each chat sends once every actor is back
HEAD, WORKER = "whatsray_head", "whatsray_worker"
ON_HEAD = ("store", "scheduler", "router", "local_services", "ingress")
ON_WORKERS = ("session_host", "outbox", "agent_worker")
PLACEMENT = {
    **{kind: {HEAD: 0.001} for kind in ON_HEAD},
    **{kind: {WORKER: 0.001} for kind in ON_WORKERS},
}
# The GCS declares a node dead after 3 failed health checks 1 s apart (Ray's default: 5, 3 s
# apart, each with a 10 s timeout), so the lost node's actors restart within seconds.
FAST_NODE_DEATH = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 2000,
    "health_check_failure_threshold": 3,
}


def user_of(chat: int) -> str:
    return f"1555400{chat:04d}"


def partition_of(chat: int) -> int:
    chat_key = ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=user_of(chat))
    return partition_for(chat_key, PARTITIONS)


@dataclass
class Traffic:
    """Each chat sends `c<chat>-m<n>`, n = 0, 1, ..., one after another until `stop`; every
    delivery must be acknowledged (the emulator's inbound answered 200)."""

    app: RunningWhatsray
    sent: dict[int, int] = field(default_factory=lambda: dict.fromkeys(range(CHATS), 0))
    stop: threading.Event = field(default_factory=threading.Event)
    senders: list[Future[None]] = field(default_factory=list)

    def chat(self, chat: int) -> None:
        while not self.stop.is_set():
            text = f"c{chat}-m{self.sent[chat]}"
            body = {"from": user_of(chat), "message": {"type": "text", "text": text}}
            answer = self.app.emulator.post("/emulator/inbound", json=body)
            assert answer.status_code == 200, f"{text}: {answer.status_code} {answer.text}"
            self.sent[chat] += 1
            self.stop.wait(PACE_S)

    def until_each_sent(self, count: int, within_s: float = 90.0) -> None:
        """Wait until every chat has sent `count` messages; a sender's failure fails here."""
        deadline = time.monotonic() + within_s
        while min(self.sent.values()) < count:
            for sender in self.senders:
                if sender.done():
                    sender.result()
            assert time.monotonic() < deadline, f"traffic stalled: {self.sent}"
            time.sleep(0.05)


@contextmanager
def cluster_with_app(data: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """The three-node cluster and the app on it, placed; both stopped on the way out."""
    # Before the nodes start: the ingress replica, which starts the platform, inherits it.
    monkeypatch.setenv("WHATSRAY_PLACEMENT", json.dumps(PLACEMENT))
    cluster = start_cluster(
        [{WORKER: 1000}, {WORKER: 1000}], head_resources={HEAD: 1000}, system_config=FAST_NODE_DEATH
    )
    try:
        agents = write_echo_agents(data / "agents.yaml", "enqueue")
        with running_whatsray(
            data, address=cluster.address, partitions=PARTITIONS, agents_file=agents
        ) as app:
            yield cluster, app
    finally:
        cluster.shutdown()


def platform_actor_names(app: RunningWhatsray) -> dict[str, str]:
    """Every platform actor's name (serve_app.py's names) -> its placement kind."""
    import serve_app
    from actors.agents import load_config

    s = app.settings
    names = {
        serve_app.STORE_NAME: "store",
        serve_app.SCHEDULER_NAME: "scheduler",
        serve_app.ROUTER_NAME: "router",
        serve_app.LOCAL_SERVICES_NAME: "local_services",
    }
    for pnid in s.phone_number_ids or [DEFAULT_PHONE_NUMBER_ID]:
        names[serve_app.outbox_name(pnid)] = "outbox"
    for p in range(s.partitions):
        names[serve_app.session_host_name(p)] = "session_host"
    for agent in load_config(str(s.agents_file), s.engine_override).names:
        for i in range(s.agent_pool_size):
            names[serve_app.agent_worker_name(agent, i)] = "agent_worker"
    return names


def test_a_worker_node_lost_under_load_loses_doubles_and_reorders_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serve_app

    with cluster_with_app(tmp_path, monkeypatch) as (cluster, app):
        names = platform_actor_names(app)
        head = cluster.head_node.node_id
        workers = {node.node_id: node for node in cluster.worker_nodes}
        placed = actor_states(list(names))
        misplaced = {
            n: node for n, (_, node) in placed.items() if (node == head) != (names[n] in ON_HEAD)
        }
        assert not misplaced, f"placement not followed: {misplaced} (head {head})"

        def hosts_on(node: str) -> list[int]:
            hosts = [serve_app.session_host_name(p) for p in range(PARTITIONS)]
            return [p for p, name in enumerate(hosts) if placed[name][1] == node]

        traffic = Traffic(app)
        with ThreadPoolExecutor(max_workers=CHATS) as pool:
            traffic.senders = [pool.submit(traffic.chat, c) for c in range(CHATS)]
            try:
                traffic.until_each_sent(BEFORE_LOSS)
                lost = max(workers, key=lambda node: len(hosts_on(node)))
                moved = hosts_on(lost)
                assert {partition_of(c) for c in range(CHATS)} & set(moved), moved
                on_lost_node = sorted(n for n, (_, node) in placed.items() if node == lost)
                print(f"removing the worker with partitions {moved} and {on_lost_node}")
                at_loss = stream_ids(app, moved)
                lost_at = time.monotonic()
                cluster.remove_node(workers[lost], allow_graceful=False)
                dead_after_s = wait_node_dead(lost) - lost_at
                survivors = {head, *workers} - {lost}
                wait_all_back(names, survivors)
                back_after_s = time.monotonic() - lost_at
                traffic.until_each_sent(max(traffic.sent.values()) + AFTER_BACK)
            finally:
                traffic.stop.set()
            for sender in traffic.senders:
                sender.result()
        wait_quiet(app.settings, app.emulator, within_s=120)
        quiet_after_s = time.monotonic() - lost_at

        problems = [p for chat in range(CHATS) for p in chat_problems(app, chat, traffic)]
        assert not problems, "\n".join(problems)
        assert unresolved(app) == 0
        assert actors_by_node().get(lost, []) == []
        still = actor_states(list(names))  # and nothing went down again meanwhile
        assert all(state == "ALIVE" and node in survivors for state, node in still.values())
        consumed, appended = stream_ids(app, moved, group=True), stream_ids(app, moved)
        for p in moved:
            # Entries were appended after the move, and the group has read up to the last.
            assert appended[p] > at_loss[p] and consumed[p] == appended[p], (p, at_loss, consumed)
        print(
            f"\nlost {on_lost_node}; node dead after {dead_after_s:.1f} s, every actor back "
            f"after {back_after_s:.1f} s, quiet after {quiet_after_s:.1f} s; "
            f"{sum(traffic.sent.values())} messages"
        )


def wait_node_dead(node_id: str, within_s: float = 60.0) -> float:
    """Poll the GCS until it has declared the node dead; when (time.monotonic())."""
    import ray

    deadline = time.monotonic() + within_s
    while any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes()):  # type: ignore[no-untyped-call]
        assert time.monotonic() < deadline, f"node {node_id} still alive after {within_s:.0f} s"
        time.sleep(0.1)
    return time.monotonic()


def wait_all_back(names: dict[str, str], survivors: set[str], within_s: float = 120.0) -> None:
    """Poll the GCS until every platform actor is ALIVE on a surviving node."""
    deadline = time.monotonic() + within_s
    while True:
        states = actor_states(list(names))
        if all(state == "ALIVE" and node in survivors for state, node in states.values()):
            return
        assert time.monotonic() < deadline, f"not back within {within_s:.0f} s: {states}"
        time.sleep(0.1)


def stream_ids(
    app: RunningWhatsray, partitions: list[int], group: bool = False
) -> dict[int, tuple[int, int]]:
    """Each partition stream's last entry id, or (`group`) the last one delivered to the session
    hosts' consumer group; as (ms, seq), to compare."""

    async def read() -> dict[int, tuple[int, int]]:
        assert app.settings.redis_url is not None
        inbox = Inbox.from_url(app.settings.redis_url, partitions=PARTITIONS)
        raw = aioredis.Redis.from_url(app.settings.redis_url, decode_responses=True)
        try:
            ids = {}
            for p in partitions:
                key = inbox.stream_key(p)
                if group:
                    groups = await raw.xinfo_groups(key)
                    entry = next(g for g in groups if g["name"] == inbox.group)
                    entry_id = entry["last-delivered-id"]
                else:
                    entry_id = (await raw.xinfo_stream(key))["last-generated-id"]
                ms, seq = entry_id.split("-")
                ids[p] = (int(ms), int(seq))
            return ids
        finally:
            await inbox.close()
            await raw.aclose()

    return asyncio.run(read())


def chat_problems(app: RunningWhatsray, chat: int, traffic: Traffic) -> list[str]:
    """What is wrong with one chat's replies: each message answered once, in order. A send Meta
    refused and the outbox retried (a 130429 while the restarted outbox catches up) is no
    answer, and no problem while its retry is answered."""
    expected = [f"echo: c{chat}-m{n}" for n in range(traffic.sent[chat])]
    records = app.emulator.get("/emulator/outbound", params={"to": user_of(chat)}).json()
    replies = [r["body"]["text"]["body"] for r in records if r["outcome"] == "accepted"]
    if replies == expected:
        return []
    twice = sorted({r for r in replies if replies.count(r) > 1})
    missing = [r for r in expected if r not in replies]
    rank = {text: n for n, text in enumerate(expected)}
    in_order = replies == sorted(replies, key=lambda r: rank.get(r, -1))
    order = "in order" if in_order else "OUT OF ORDER"
    refused = [r.get("error_code") for r in records if r["outcome"] != "accepted"]
    return [f"chat {chat}: twice {twice}, missing {missing}, {order}, refused {refused}: {replies}"]


def unresolved(app: RunningWhatsray) -> int:
    """`GET /api/inbound/unresolved?older_than_s=0`'s count: inbound items with no outcome."""
    token = app.settings.admin_token
    assert token is not None
    answer = app.api.get(
        "/api/inbound/unresolved",
        params={"older_than_s": 0},
        headers={"Authorization": f"Bearer {token.get_secret_value()}"},
    )
    answer.raise_for_status()
    count: int = answer.json()["count"]
    return count
