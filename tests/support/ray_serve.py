"""A local Ray with Serve on a loopback port, the way every Ray test module starts it, and the
whole whatsray app on it.

Two cores here: one cluster per module, a small object store, no dashboard, and quiet logs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import free_port
from whatsray.inbox import EmbeddedValkey
from whatsray.settings import Settings, load_settings


@contextmanager
def local_ray_serve(
    http_port: int, address: str | None = None, **ray_options: Any
) -> Iterator[None]:
    """Ray and Serve (HTTP on 127.0.0.1:`http_port`) until the block exits, then both stopped.
    `ray_options` go to `ray.init` (a metrics export port, a `_system_config`...). `address`:
    join that running cluster (`tests/support/ray_cluster.py`) instead of starting a Ray; Serve's
    proxy then runs on the head only (its simulated nodes share one loopback)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    if address is None:
        ray_options = {
            "num_cpus": 2,
            "include_dashboard": False,
            "object_store_memory": 150 * 1024**2,
            **ray_options,
        }
    ray.init(address=address, logging_level="ERROR", log_to_driver=False, **ray_options)
    try:
        http_options = {"host": "127.0.0.1", "port": http_port}
        serve.start(http_options=http_options, proxy_location="HeadOnly" if address else None)
        yield
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@dataclass(frozen=True)
class RunningWhatsray:
    settings: Settings  # with the local secrets filled in (admin token...)
    api: httpx.Client  # the Serve ingress: /webhook, /ready, /api
    emulator: httpx.Client  # WhatsApp
    valkey: EmbeddedValkey


@contextmanager
def running_whatsray(
    data: Path,
    *,
    api_timeout_s: float = 30.0,
    ready_within_s: float = 90.0,
    ray_options: Mapping[str, Any] | None = None,
    address: str | None = None,
    **settings: Any,
) -> Iterator[RunningWhatsray]:
    """The whole app (`serve_app.build_app`) on a local Ray (or the running cluster at
    `address`), its own Valkey and the emulator on free loopback ports, ready (`/ready` answered
    200); everything stopped on the way out."""
    from ray import serve

    import serve_app

    valkey = EmbeddedValkey(data / "redis")
    redis_url = valkey.start()
    http_port, emulator_port = free_port(), free_port()
    config = load_settings(
        data_dir=data,
        redis_url=redis_url,
        http_port=http_port,
        emulator_port=emulator_port,
        **settings,
    )
    try:
        with local_ray_serve(http_port, address, **(ray_options or {})):
            serve.run(serve_app.build_app(config), name="whatsray", route_prefix="/")
            api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=api_timeout_s)
            emulator = httpx.Client(base_url=f"http://127.0.0.1:{emulator_port}", timeout=30)
            deadline = time.monotonic() + ready_within_s
            while api.get("/ready").status_code != 200:
                assert time.monotonic() < deadline, api.get("/ready").text
                time.sleep(0.5)
            yield RunningWhatsray(serve_app.resolve_local_secrets(config), api, emulator, valkey)
    finally:
        valkey.stop()
