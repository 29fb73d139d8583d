"""`ray up` really run: `configs/cluster-onprem.yaml`, as shipped, brings whatsray up on three
hosts (a head and two workers) and `ray down` takes it down.

The hosts are network namespaces on this machine, each with its own sshd, /tmp, home and
processes (`tests/support/netns_hosts.py`). The launcher runs here, in the root namespace, with
the venv's `ray`; the head's autoscaler then starts the workers over ssh. Only what the config's
comments mark CHANGE differs from the shipped file: the IPs, the ssh user and key, and the paths
of the settings (an env file and a directory of secret files, docs/cluster.md). The app's Valkey
(append-only file on, not on 6379) and the WhatsApp emulator run here on the hosts' bridge; the
emulator delivers signed webhooks to the head's Serve port.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.onprem import (
    DASHBOARD_PORT,
    ROOT,
    SERVE_PORT,
    Launcher,
    Settings,
    emulator_on,
    ray_log_tails,
    render_config,
    valkey_on,
    wait_for,
)
from tests.support.netns_hosts import Host, Hosts, netns_hosts
from whatsray.inbox import partition_for
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID, EmulatorConfig
from whatsray.whatsapp.events import ChatKey

pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]

PARTITIONS = 2
USERS_PER_PARTITION = 2
# Every platform actor but the store asks for the workers' `whatsray_worker` (the config's
# WHATSRAY_PLACEMENT); the store goes to the head (cluster mode, whatsray/placement.py).
ON_THE_HEAD = {"StoreActor"}
ON_A_WORKER = {
    "SessionHost",
    "OutboxActor",
    "RouterActor",
    "SchedulerActor",
    "AgentWorker",
    "ServeReplica:whatsray:ingress",
}


def test_ray_up_serves_each_message_once_across_nodes_and_ray_down_stops_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # Ray's state API, called from here
    with ExitStack() as stack:
        hosts = stack.enter_context(netns_hosts(3, ROOT))
        head, *workers = hosts.hosts
        token = {name: secrets.token_urlsafe(16) for name in ("app", "verify", "access", "admin")}
        redis_url = stack.enter_context(valkey_on(hosts.bridge_ip, tmp_path / "valkey"))
        emulator_url = stack.enter_context(
            emulator_on(
                hosts.bridge_ip,
                EmulatorConfig(
                    app_secret=token["app"],
                    access_token=token["access"],
                    webhook_url=f"http://{head.ip}:{SERVE_PORT}/webhook",
                ),
            )
        )
        settings = Settings(
            env={
                "WHATSRAY_MODE": "cluster",
                "WHATSRAY_PHONE_NUMBER_IDS": json.dumps([DEFAULT_PHONE_NUMBER_ID]),
                "WHATSRAY_GRAPH_API_BASE_URL": emulator_url,
                "WHATSRAY_DATA_DIR": str(hosts.home / "whatsray-data"),
                # One scripted echo agent: every message gets its own turn and one reply.
                "WHATSRAY_AGENTS_FILE": str(hosts.home / "whatsray/benchmarks/agents.yaml"),
                "WHATSRAY_PARTITIONS": str(PARTITIONS),
                "RAY_AUTH_MODE": "disabled",  # a real cluster: token and RAY_AUTH_TOKEN
                "RAY_USAGE_STATS_ENABLED": "0",
            },
            secrets={
                "WHATSRAY_APP_SECRET": token["app"],
                "WHATSRAY_VERIFY_TOKEN": token["verify"],
                "WHATSRAY_ACCESS_TOKEN": token["access"],
                "WHATSRAY_ADMIN_TOKEN": token["admin"],
                "WHATSRAY_REDIS_URL": redis_url,
            },
        )
        env_file, secrets_dir = settings.write(tmp_path / "whatsray")
        config = render_config(hosts, env_file, secrets_dir, tmp_path / "cluster.yaml")
        launcher = Launcher(config, tmp_path / "launcher")
        stack.enter_context(ray_logs_on_failure(hosts))  # before the hosts go

        launcher.up()
        nodes = wait_for(
            lambda: every_node_alive(head, {h.ip for h in hosts.hosts}),
            within_s=180,
            what="the workers to join",
        )
        api = stack.enter_context(
            httpx.Client(base_url=f"http://{head.ip}:{SERVE_PORT}", timeout=30)
        )
        wait_for(lambda: ready(api), within_s=180, what="/ready")
        emulator = stack.enter_context(httpx.Client(base_url=emulator_url, timeout=30))

        said = {user: f"hello from {user}" for user in users_of_every_partition()}
        for user, text in said.items():
            sent = emulator.post(
                "/emulator/inbound", json={"from": user, "message": {"type": "text", "text": text}}
            )
            assert sent.status_code == 200, sent.text  # the head's ingress took the webhook
        wait_for(lambda: all_answered(emulator, said), within_s=90, what="a reply to everyone")
        admin = {"Authorization": f"Bearer {token['admin']}"}
        wait_quiet(api, emulator, admin)
        assert {user: texts_to(emulator, user) for user in said} == {
            user: [f"echo: {text}"] for user, text in said.items()
        }
        unresolved = api.get("/api/inbound/unresolved", params={"older_than_s": 0}, headers=admin)
        assert unresolved.json()["count"] == 0, unresolved.text
        persistence = api.get("/api/status", headers=admin).json()["inbox_persistence"]
        assert persistence["aof_enabled"] is True, persistence

        placed = actors_by_class(head, nodes)
        assert placed.keys() >= ON_THE_HEAD | ON_A_WORKER, placed
        assert {ip for c in ON_THE_HEAD for ip in placed[c]} == {head.ip}, placed
        on_workers = {ip for c in ON_A_WORKER for ip in placed[c]}
        assert on_workers and on_workers <= {w.ip for w in workers}, placed

        launcher.down()
        wait_for(lambda: no_leftovers(hosts, head), within_s=60, what="Ray to stop on the head")
        # The local provider's `ray down` does not reach the workers: their raylets give up on
        # the lost GCS a minute later, but their log monitors stay. `ray stop` there, as the
        # config's header says.
        for worker in workers:
            hosts.ssh(worker, "~/whatsray/.venv/bin/ray stop")
        wait_for(lambda: no_leftovers(hosts, *hosts.hosts), within_s=60, what="Ray to stop")


def users_of_every_partition() -> list[str]:
    """Users whose chats fall in each inbox partition, so that both session hosts answer."""
    found: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    number = 15550001000
    while any(len(users) < USERS_PER_PARTITION for users in found.values()):
        user = str(number)
        chat = ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=user)
        partition = found[partition_for(chat, PARTITIONS)]
        if len(partition) < USERS_PER_PARTITION:
            partition.append(user)
        number += 1
    return [user for users in found.values() for user in users]


def every_node_alive(head: Host, ips: set[str]) -> dict[str, str]:
    """Node id -> IP once every host's node is alive in the cluster (Ray's state API through
    the head's dashboard, as `ray list nodes` asks it)."""
    from ray.util.state import list_nodes

    nodes = list_nodes(address=dashboard(head), filters=[("state", "=", "ALIVE")])
    alive = {node.node_id: node.node_ip for node in nodes}
    assert set(alive.values()) == ips, f"alive: {sorted(alive.values())}"
    return alive


def actors_by_class(head: Host, nodes: dict[str, str]) -> dict[str, set[str]]:
    """Class name -> the IPs of the nodes its live actors run on."""
    from ray.util.state import list_actors

    placed: dict[str, set[str]] = {}
    for actor in list_actors(
        address=dashboard(head), filters=[("state", "=", "ALIVE")], limit=1000
    ):
        node = actor.node_id or "no node"
        placed.setdefault(actor.class_name, set()).add(nodes.get(node, node))
    return placed


def dashboard(head: Host) -> str:
    return f"http://{head.ip}:{DASHBOARD_PORT}"


def texts_to(emulator: httpx.Client, user: str) -> list[str]:
    """The texts the bot sent `user` that WhatsApp (the emulator) accepted, in order."""
    sent = emulator.get("/emulator/outbound", params={"to": user}).json()
    return [r["body"]["text"]["body"] for r in sent if r["outcome"] == "accepted"]


def wait_quiet(api: httpx.Client, emulator: httpx.Client, admin: dict[str, str]) -> None:
    """Until nothing is left to read, ack, send or deliver, twice in a row (the idea of
    `tests/support/quiet.py`, through the admin API: this process is not a Ray driver)."""
    calm = 0

    def quiet() -> bool | None:
        nonlocal calm
        calm = calm + 1 if is_quiet(api, emulator, admin) else 0
        return True if calm >= 2 else None

    wait_for(quiet, within_s=120, what="the platform and the emulator to be quiet")


def is_quiet(api: httpx.Client, emulator: httpx.Client, admin: dict[str, str]) -> bool:
    status: dict[str, Any] = api.get("/api/status", headers=admin).json()
    busy = [
        *(p["lag"] != 0 or p["pending"] != 0 for p in status["partitions"]),
        *(o["queue_depth"] != 0 for o in status["outboxes"]),
        bool(status["unavailable"]),
        emulator.get("/emulator/webhooks/pending").json()["pending"] != 0,
    ]
    return not any(busy)


def ready(api: httpx.Client) -> bool:
    answer = api.get("/ready")
    assert answer.status_code == 200, answer.text
    return True


def all_answered(emulator: httpx.Client, said: dict[str, str]) -> bool:
    waiting = [user for user in said if not texts_to(emulator, user)]
    assert not waiting, f"no reply yet to {waiting}"
    return True


def no_leftovers(hosts: Hosts, *of: Host) -> bool:
    left = {host.netns: hosts.leftovers(host) for host in of}
    assert not any(left.values()), f"still running: {left}"
    return True


@contextmanager
def ray_logs_on_failure(hosts: Hosts) -> Iterator[None]:
    """On a failure, print the end of Ray's logs on the hosts (pytest shows it with the error)."""
    try:
        yield
    except BaseException:
        print(ray_log_tails(hosts))
        raise
