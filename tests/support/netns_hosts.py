"""Test hosts on this one machine, made of Linux namespaces, for `ray up` with Ray's `local`
provider (`tests/cluster/test_ray_up_onprem.py`, `configs/cluster-onprem.yaml`).

Each host is a network namespace with its own address on a bridge, and an sshd running in it
inside mount, UTS and PID namespaces of its own: its own hostname, a private /tmp (Ray's session
directory and sockets), a private home for the ssh user (the launcher's bootstrap config and
key), and only its own processes in sight (`ray stop` kills every Ray process it can see).

    root namespace                        host i (netns whatsray-host-<i>, hostname the same)
    bridge wrhosts0 198.18.0.1/24 ──veth── eth0 198.18.0.<i+2>/24, lo
                                           sshd on :22, PID 1 of the host, with
                                             /tmp  = <base>/host-<i>/tmp
                                             ~user = <base>/host-<i>/home: .ssh/authorized_keys,
                                                     whatsray -> the repository (its .venv)

198.18.0.0/15 is reserved for benchmarking (RFC 2544): no real network uses it. Each host's
default route points at 198.18.0.254, an address nobody holds: Ray finds a node's own address
from the route towards 8.8.8.8, as on a real machine, yet nothing leaves (a packet for anything
but the hosts and the bridge waits for an ARP answer that never comes). <base> is under
/var/tmp, not /tmp, which each host's /tmp hides; Ray's logs can be read there from outside.

Root only, as on CI. A missing tool fails with the Debian package that brings it. Everything
is torn down on the way out, failure or not: every process in the namespaces killed, the
namespaces, the veth pairs and the bridge deleted, the directories removed. What a killed run
left behind (the names are fixed) is removed before a start.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Host", "Hosts", "HostsUnavailable", "netns_hosts"]

BRIDGE = "wrhosts0"
NETNS_PREFIX = "whatsray-host-"
VETH_PREFIX = "wrhv"  # the root namespace's end of each host's veth pair
SUBNET = "198.18.0"
BRIDGE_IP = f"{SUBNET}.1"
NOWHERE = f"{SUBNET}.254"  # the hosts' default gateway: an address nobody holds
MAX_HOSTS = 200
BASE, BASE_PREFIX = Path("/var/tmp"), "whatsray-hosts-"  # outside /tmp, which hosts hide
SSH_USER = "root"  # the tests run as root; each host has its own home for it
SSH_HOME = Path("/root")

# Tool -> the Debian package that brings it.
TOOLS = {
    "ip": "iproute2",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "rsync": "rsync",  # the cluster launcher copies its files with it, on both ends
    "unshare": "util-linux",
    "mount": "mount",
    "uptime": "procps",  # the launcher's "is the node up" probe
}


class HostsUnavailable(RuntimeError):
    """This machine cannot make the hosts (not root, a tool missing, too many hosts)."""


@dataclass(frozen=True)
class Host:
    index: int
    netns: str  # also its hostname
    ip: str
    directory: Path  # seen from the root namespace

    @property
    def tmp(self) -> Path:
        """The host's /tmp (Ray's session directory: /tmp/ray/session_latest)."""
        return self.directory / "tmp"

    @property
    def home(self) -> Path:
        """The ssh user's home on the host."""
        return self.directory / "home"


@dataclass(frozen=True)
class Hosts:
    bridge_ip: str  # the root namespace's address on the hosts' network
    hosts: tuple[Host, ...]
    ssh_user: str
    ssh_key: Path  # the private key every host accepts
    home: Path  # the ssh user's home as the hosts see it (each host has its own)

    def ssh(self, host: Host, command: str, *, timeout_s: float = 60.0) -> str:
        """Run `command` on `host` as the ssh user; its output. Fails with the output when the
        command does."""
        result = subprocess.run(
            [*ssh_command(self.ssh_key), f"{self.ssh_user}@{host.ip}", command],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"ssh {host.ip} {command!r} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result.stdout

    def processes(self, host: Host) -> dict[int, str]:
        """Every process in the host's network namespace: pid -> command line."""
        return {pid: _command_line(pid) for pid in _netns_pids(host.netns)}

    def leftovers(self, host: Host) -> dict[int, str]:
        """The host's processes but its own machinery (sshd, its sessions, and the `unshare`
        that started it): what something run over ssh left running."""
        return {
            pid: line
            for pid, line in self.processes(host).items()
            if not line.startswith(("sshd:", "unshare ", "(gone)"))
        }


def ssh_command(key: Path) -> list[str]:
    """ssh with `key`, without asking about or remembering host keys (they are made per run)."""
    return [
        "ssh",
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
    ]


@contextmanager
def netns_hosts(count: int, repository: Path) -> Iterator[Hosts]:
    """`count` hosts whose ssh user's home holds `whatsray`, a link to `repository` (with its
    .venv: setup commands that install whatsray are then a no-op). Torn down on the way out."""
    _check_machine(count)
    _remove_leftovers()
    with ExitStack() as cleanup:
        sshds: list[subprocess.Popen[bytes]] = []
        cleanup.callback(_reap, sshds)  # after `_remove_leftovers` (an ExitStack runs LIFO)
        cleanup.callback(_remove_leftovers)  # the directories included
        base = Path(tempfile.mkdtemp(prefix=BASE_PREFIX, dir=BASE))
        key = base / "id_ed25519"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "whatsray-test", "-f", str(key))
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        hosts = tuple(
            _make_host(i, base, key.with_suffix(".pub"), repository, sshds) for i in range(count)
        )
        for host in hosts:
            _wait_for_ssh(host, key)
        yield Hosts(BRIDGE_IP, hosts, SSH_USER, key, SSH_HOME)


def _check_machine(count: int) -> None:
    if os.geteuid() != 0:
        raise HostsUnavailable("making test hosts needs root (network and mount namespaces)")
    if not 1 <= count <= MAX_HOSTS:
        raise HostsUnavailable(f"between 1 and {MAX_HOSTS} hosts, not {count}")
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool, path=path)})
    if missing:
        raise HostsUnavailable(
            "tools missing to make test hosts; install the Debian packages: "
            f"apt-get install {' '.join(missing)}"
        )


def _make_host(
    index: int, base: Path, public_key: Path, repository: Path, sshds: list[subprocess.Popen[bytes]]
) -> Host:
    netns, ip = f"{NETNS_PREFIX}{index}", f"{SUBNET}.{index + 2}"
    host = Host(index, netns, ip, base / f"host-{index}")
    for directory in (host.tmp, host.home / ".ssh", host.directory / "sshd"):
        directory.mkdir(parents=True)
    host.tmp.chmod(0o1777)
    host.home.chmod(0o700)
    (host.home / ".ssh").chmod(0o700)
    keys = host.home / ".ssh" / "authorized_keys"
    shutil.copyfile(public_key, keys)
    keys.chmod(0o600)
    (host.home / "whatsray").symlink_to(repository)
    through = _hidden_paths(repository, host)
    for _, mirror in through:
        mirror.mkdir()

    veth = f"{VETH_PREFIX}{index}"
    _run("ip", "netns", "add", netns)
    _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    _run("ip", "link", "set", veth, "master", BRIDGE, "up")
    _run("ip", "-n", netns, "addr", "add", f"{ip}/24", "dev", "eth0")
    _run("ip", "-n", netns, "link", "set", "eth0", "up")
    _run("ip", "-n", netns, "link", "set", "lo", "up")
    _run("ip", "-n", netns, "route", "add", "default", "via", NOWHERE)
    sshds.append(_start_sshd(host, through))
    return host


def _start_sshd(host: Host, through: list[tuple[Path, Path]]) -> subprocess.Popen[bytes]:
    """sshd in the host's network namespace, inside a mount and UTS namespace of its own where
    the host's directories are bound over /tmp and the ssh user's home (`through`: real
    directories those would hide, bound into them first so that they keep their paths). It
    lives until its namespace's processes are killed (`_remove_leftovers`)."""
    sshd_dir = host.directory / "sshd"
    host_key = sshd_dir / "ssh_host_ed25519_key"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
    config = sshd_dir / "sshd_config"
    config.write_text(
        f"ListenAddress {host.ip}:22\n"
        f"HostKey {host_key}\n"
        "PidFile none\n"
        "UsePAM no\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "AuthorizedKeysFile .ssh/authorized_keys\n"
        "PrintMotd no\n"
        "PrintLastLog no\n"
        # The launcher and the head's autoscaler open sessions in parallel.
        "MaxStartups 100\n"
        "MaxSessions 100\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    inside = " && ".join(
        [
            *(
                f"mount --bind {shlex.quote(str(real))} {shlex.quote(str(mirror))}"
                for real, mirror in through
            ),
            f"mount --rbind {shlex.quote(str(host.tmp))} /tmp",
            f"mount --rbind {shlex.quote(str(host.home))} {SSH_HOME}",
            f"hostname {host.netns}",
            f"exec {shutil.which('sshd', path='/usr/sbin:/sbin')} -D -e -f {config}",
        ]
    )
    log = (sshd_dir / "sshd.log").open("ab")
    with log:
        return subprocess.Popen(
            [*_in_namespaces_of(host), "sh", "-c", inside],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # not in the test's process group: Ctrl-C goes to pytest
        )


def _in_namespaces_of(host: Host) -> list[str]:
    """The command prefix that runs a process as the host's: in its network namespace and in
    new mount, UTS and PID namespaces (whose PID 1 is the command that follows)."""
    unshare = ["unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc"]
    return ["ip", "netns", "exec", host.netns, *unshare, "--propagation", "private"]


def _hidden_paths(repository: Path, host: Host) -> list[tuple[Path, Path]]:
    """What the host's own /tmp and home would hide but it must see: the repository (a clean
    clone may live under /tmp) and the venv's interpreter (pyenv keeps it in the home). Each as
    (its top directory under /tmp or the home, where that is bound in the host's directories)."""
    interpreter = Path(os.path.realpath(repository / ".venv" / "bin" / "python"))
    pairs: dict[Path, Path] = {}
    for path in (repository.resolve(), interpreter):
        for hidden, own in ((Path("/tmp"), host.tmp), (SSH_HOME, host.home)):
            if path.is_relative_to(hidden) and path != hidden:
                top = hidden / path.relative_to(hidden).parts[0]
                pairs[top] = own / top.name
    return list(pairs.items())


def _wait_for_ssh(host: Host, key: Path, within_s: float = 30.0) -> None:
    """Until `ssh host true` works (sshd listens and the key is accepted)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            with socket.create_connection((host.ip, 22), timeout=1):
                pass
            result = subprocess.run(
                [*ssh_command(key), f"{SSH_USER}@{host.ip}", "true"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if result.returncode == 0:
                return
            problem = result.stderr
        except OSError as exc:
            problem = str(exc)
        if time.monotonic() > deadline:
            log = (host.directory / "sshd" / "sshd.log").read_text(errors="replace")
            raise HostsUnavailable(f"no ssh to {host.ip}: {problem}\nsshd log:\n{log}")
        time.sleep(0.1)


def _remove_leftovers() -> None:
    """Kill every process in our namespaces; delete the veth pairs, the namespaces, the bridge
    and the hosts' directories. Safe to call when none exists. Only one set of hosts can exist
    at a time (fixed names), as only one Ray test runs at a time on a machine."""
    names = [n for n in _netns_names() if n.startswith(NETNS_PREFIX)]
    for netns in names:
        _kill_everything_in(netns)
    # At once: a pair deleted with its namespace goes only when the kernel gets round to it.
    for link in Path("/sys/class/net").iterdir():
        if link.name.startswith(VETH_PREFIX):
            _run("ip", "link", "del", link.name)
    for netns in names:
        _run("ip", "netns", "del", netns)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        _run("ip", "link", "del", BRIDGE)
    for stale in BASE.glob(f"{BASE_PREFIX}*"):  # a killed run's (no process uses them now)
        shutil.rmtree(stale, ignore_errors=True)


def _reap(processes: list[subprocess.Popen[bytes]]) -> None:
    """Collect the exit status of processes `_remove_leftovers` killed (no zombies left)."""
    for process in processes:
        process.wait(timeout=30)


def _kill_everything_in(netns: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while pids := _netns_pids(netns):  # a process may fork while we kill: again until none
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            left = {pid: _command_line(pid) for pid in pids}
            raise RuntimeError(f"processes in {netns} survive SIGKILL: {left}")
        time.sleep(0.05)


def _netns_names() -> list[str]:
    out = _run("ip", "netns", "list")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _netns_pids(netns: str) -> list[int]:
    return [int(pid) for pid in _run("ip", "netns", "pids", netns).split()]


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "(gone)"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited {result.returncode}: {result.stderr}")
    return result.stdout
