"""A local Ray with Serve on a loopback port, the way every Ray test module starts it.

Two cores here: one cluster per module, a small object store, no dashboard, and quiet logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def local_ray_serve(http_port: int) -> Iterator[None]:
    """Ray and Serve (HTTP on 127.0.0.1:`http_port`) until the block exits, then both stopped."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=150 * 1024**2,
        logging_level="ERROR",
        log_to_driver=False,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        yield
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
