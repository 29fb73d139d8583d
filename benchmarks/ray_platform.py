"""Start the whole platform on a local Ray for a benchmark, and always tear it down.

Like `tests/integration/test_platform_ray.py`: a real Valkey (`EmbeddedValkey`), `serve.start` on
a free loopback port, `serve.run(build_app(settings))`, wait for `/ready`. With `haproxy=True`
Serve's HAProxy ingress replaces the Python proxy (the environment must say so before Ray starts).
Not named `platform.py`: a script run from `benchmarks/` would shadow the standard library.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import free_port
from whatsray.inbox import EmbeddedValkey

SECRETS = {
    "app_secret": "bench-secret",
    "verify_token": "bench-verify",
    "access_token": "bench-token",
    "admin_token": "bench-admin",
}
READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class RunningPlatform:
    api_url: str  # the Serve ingress: /webhook, /ready, /api
    emulator_url: str
    redis_url: str
    partitions: int
    data_dir: Path


def _env_for_ray(haproxy: bool) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_THROUGHPUT_OPTIMIZED"):
        os.environ[name] = "1" if haproxy else "0"


@contextmanager
def valkey(data_dir: Path) -> Iterator[str]:
    server = EmbeddedValkey(data_dir / "redis")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@contextmanager
def running_platform(
    *,
    haproxy: bool = True,
    redis_url: str | None = None,
    partitions: int = 2,
    **settings_overrides: Any,
) -> Iterator[RunningPlatform]:
    """The platform on a fresh local Ray. Everything it started is stopped on the way out."""
    _env_for_ray(haproxy)
    import ray
    from ray import serve

    import serve_app
    from whatsray.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="wrbench-") as tmp:
        data = Path(tmp)
        own_valkey = None
        if redis_url is None:
            own_valkey = EmbeddedValkey(data / "redis")
            redis_url = own_valkey.start()
        http_port, emulator_port = free_port(), free_port()
        settings = load_settings(
            data_dir=data,
            redis_url=redis_url,
            partitions=partitions,
            http_port=http_port,
            emulator_port=emulator_port,
            **SECRETS,
            **settings_overrides,
        )
        seen: dict[int, str] = {}
        try:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                object_store_memory=150 * 1024**2,
                logging_level=logging.ERROR,
                log_to_driver=False,
            )
            serve.start(http_options={"host": "127.0.0.1", "port": http_port})
            serve.run(serve_app.build_app(settings), name="whatsray", route_prefix="/")
            api_url = f"http://127.0.0.1:{http_port}"
            _wait_ready(api_url + "/ready")
            seen = _our_ray_processes()
            yield RunningPlatform(
                api_url, f"http://127.0.0.1:{emulator_port}", redis_url, partitions, data
            )
        finally:
            seen.update(_our_ray_processes())
            try:
                if ray.is_initialized():
                    serve.shutdown()  # type: ignore[no-untyped-call]
            finally:
                ray.shutdown()
                if own_valkey is not None:
                    own_valkey.stop()
                _stop_leftovers(seen)


def stop_session_hosts(partitions: int) -> None:
    """Kill the consumers (no restart): the inbox keeps taking appends, nothing reads them."""
    import ray

    import serve_app

    for p in range(partitions):
        host = ray.get_actor(serve_app.session_host_name(p), namespace=serve_app.NAMESPACE)
        ray.kill(host, no_restart=True)


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the platform was not ready within {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.5)


def _our_ray_processes() -> dict[int, str]:
    """Ray's (and HAProxy's) processes below this one: pid -> command line."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: dict[int, str] = {}
    todo = list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        cmdline = _cmdline(pid)
        if any(mark in cmdline for mark in ("ray::", "/ray/", "haproxy")):
            found[pid] = cmdline
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _stop_leftovers(seen: dict[int, str]) -> None:
    """Kill, by pid, what this run started and shutdown left behind: a stale HAProxy would keep
    ports 8404/9101 and break the next run. Other sessions' Ray processes are never touched."""
    seen = {**seen, **_our_ray_processes()}
    time.sleep(1.0)
    for pid, cmdline in seen.items():
        if cmdline and _cmdline(pid) == cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
