"""The test hosts `ray up` runs on (`tests/support/netns_hosts.py`) are hosts as Ray sees them:
each has its own address, hostname, /tmp, home and processes; they reach each other and the
bridge, nothing outside; and nothing of them is left afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.netns_hosts import BASE, BASE_PREFIX, BRIDGE, NETNS_PREFIX, netns_hosts

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

PYTHON = "~/whatsray/.venv/bin/python"  # the repository's venv, through the home's link
CONNECT = PYTHON + " -c 'import socket; socket.create_connection((\"{ip}\", {port}), timeout={t})'"


def test_each_host_is_its_own_machine_and_nothing_is_left_after() -> None:
    with netns_hosts(2, ROOT) as hosts:
        first, second = hosts.hosts
        for host in hosts.hosts:
            seen = hosts.ssh(host, "hostname; ip -4 -o addr show eth0; echo ~")
            assert host.netns in seen and f"{host.ip}/24" in seen and str(hosts.home) in seen
            # The repository and its venv: the config's setup commands have nothing to install.
            hosts.ssh(host, "test -x ~/whatsray/.venv/bin/ray")
            # Its own processes only: `ray stop` there cannot touch another host's Ray.
            assert set(hosts.ssh(host, "ps -e -o comm=").split()) <= {"sshd", "bash", "ps"}

        hosts.ssh(first, "echo mine > /tmp/marker && echo mine > ~/marker")
        assert (first.tmp / "marker").read_text() == (first.home / "marker").read_text() == "mine\n"
        assert hosts.ssh(second, "ls -A /tmp ~").split().count("marker") == 0
        assert not Path("/tmp/marker").exists()

        # The other host and the bridge answer (sshd listens on the one; a refusal on the
        # other proves it is there); anything else is unreachable.
        hosts.ssh(first, CONNECT.format(ip=second.ip, port=22, t=5))
        refused = hosts.ssh(first, f"{CONNECT.format(ip=hosts.bridge_ip, port=1, t=5)} 2>&1 || :")
        assert "Connection refused" in refused, refused
        outside = hosts.ssh(first, f"{CONNECT.format(ip='203.0.113.1', port=80, t=10)} 2>&1 || :")
        assert "No route to host" in outside or "timed out" in outside, outside

    assert not any(NETNS_PREFIX in line for line in Path("/proc/self/mounts").read_text().split())
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()
    assert not list(BASE.glob(f"{BASE_PREFIX}*"))
    assert not [p for p in Path("/run/netns").glob(f"{NETNS_PREFIX}*")]
