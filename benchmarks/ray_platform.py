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
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import free_port
from whatsray.cli.local import LOCAL_DRAIN_S
from whatsray.inbox import EmbeddedValkey
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID

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
    emulator_pid: int | None = None  # set when the emulator runs as its own process


# The emulator as a process of its own (what `whatsray local` serves, without console logging):
# its CPU is then Meta's cost, not the platform's.
_SERVE_EMULATOR = """
import sys, uvicorn
from whatsray.whatsapp.emulator import EmulatorConfig, create_emulator_app
config = EmulatorConfig.model_validate_json(sys.argv[1])
uvicorn.run(create_emulator_app(config), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning", access_log=False)
"""


@contextmanager
def emulator_process(port: int, webhook_url: str, throughput_mps: float) -> Iterator[int]:
    """The emulator on `port`, posting webhooks to `webhook_url`; yields its pid."""
    from whatsray.whatsapp.emulator import EmulatorConfig

    config = EmulatorConfig(
        app_secret=SECRETS["app_secret"],
        access_token=SECRETS["access_token"],
        webhook_url=webhook_url,
        throughput_mps=throughput_mps,
    )
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE_EMULATOR, config.model_dump_json(), str(port)]
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/emulator/health", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.2)
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def _env_for_ray(haproxy: bool) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_THROUGHPUT_OPTIMIZED"):
        os.environ[name] = "1" if haproxy else "0"
    # One node, no outside load balancer to drain: stop the ingress at once, as local mode does.
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", str(LOCAL_DRAIN_S))


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
    separate_emulator: bool = False,
    address: str | None = None,
    **settings_overrides: Any,
) -> Iterator[RunningPlatform]:
    """The platform on a fresh local Ray. Everything it started is stopped on the way out.

    `separate_emulator`: the emulator runs as its own process and the platform in cluster mode
    against it (as against Meta), so that its CPU is counted apart from the platform's.

    `address`: join that running Ray cluster (a `ray.cluster_utils.Cluster` started by this
    process, `benchmarks/multinode.py`) instead of starting a local Ray; Serve then runs its
    proxy on the head node only (every node of a simulated cluster shares one loopback)."""
    _env_for_ray(haproxy)
    from whatsray.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="wrbench-") as tmp, contextlib.ExitStack() as stack:
        data = Path(tmp)
        if redis_url is None:
            redis_url = stack.enter_context(valkey(data))
        http_port, emulator_port = free_port(), free_port()
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        if separate_emulator:
            settings_overrides = {
                "mode": "cluster",
                "graph_api_base_url": emulator_url,
                "phone_number_ids": [DEFAULT_PHONE_NUMBER_ID],
                **settings_overrides,
            }
        settings = load_settings(
            data_dir=data,
            redis_url=redis_url,
            partitions=partitions,
            http_port=http_port,
            emulator_port=emulator_port,
            **SECRETS,
            **settings_overrides,
        )
        emulator_pid = None
        if separate_emulator:
            webhook = f"http://127.0.0.1:{http_port}/webhook"
            emulator_pid = stack.enter_context(
                emulator_process(emulator_port, webhook, settings.throughput_mps)
            )
        api_url = stack.enter_context(_on_ray(settings, http_port, address))
        yield RunningPlatform(api_url, emulator_url, redis_url, partitions, data, emulator_pid)


@contextmanager
def _on_ray(settings: Any, http_port: int, address: str | None = None) -> Iterator[str]:
    """Ray, Serve and the app; yields the ingress URL once `/ready`. Stops all of it after."""
    import ray
    from ray import serve

    import serve_app

    seen: dict[int, str] = {}
    try:
        if address is None:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                object_store_memory=150 * 1024**2,
                logging_level=logging.ERROR,
                log_to_driver=False,
            )
        else:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        http_options = {"host": "127.0.0.1", "port": http_port}
        if address is None:
            serve.start(http_options=http_options)
        else:
            serve.start(http_options=http_options, proxy_location="HeadOnly")
        serve.run(serve_app.build_app(settings), name="whatsray", route_prefix="/")
        api_url = f"http://127.0.0.1:{http_port}"
        _wait_ready(api_url + "/ready")
        seen = _our_ray_processes()
        yield api_url
    finally:
        seen.update(_our_ray_processes())
        try:
            if ray.is_initialized():
                serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()
            _stop_leftovers(seen)


def stop_session_hosts(partitions: int) -> None:
    """Kill the consumers (no restart): the inbox keeps taking appends, nothing reads them."""
    import ray

    import serve_app

    for p in range(partitions):
        host = serve_app.find_actor(serve_app.session_host_name(p))
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
