"""A new release takes over from the old ones (docs/cluster.md, "Upgrades").

`serve deploy` of a new version starts new ingress replicas; the first one to start runs
`Platform.start` under the rollout lock (a Redis lock: the replicas may be on any node), which
retires every other release's actors before it creates its own: stage by stage
(`whatsray.release.RETIRE_ORDER`), each actor drains (`drain()`: finishes what it has in hand
and hands the rest over through the inbox and the ledger), then is killed for good and its
name waited out. So no partition, number, job or DuckDB file is ever worked by two releases at
once, and what an old actor did not finish is redelivered to the new one, where the usual
dedupe makes it harmless. Webhooks keep being accepted into the inbox all along.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import ray
from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from whatsray.release import in_retire_order, releases_running, split_versioned, versioned

log = logging.getLogger(__name__)

LOCK_KEY = "whatsray:rollout"
# The holder renews the lock every third of this; one that died mid-rollout (its whole cluster,
# say) holds up the next start for at most this long.
LOCK_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 30.0
GONE_TIMEOUT_S = 30.0


@asynccontextmanager
async def rollout_lock(redis_url: str) -> AsyncIterator[None]:
    """One `Platform.start` at a time across the cluster (every ingress replica runs one)."""
    client = Redis.from_url(redis_url)
    try:
        async with client.lock(LOCK_KEY, timeout=LOCK_TIMEOUT_S, blocking_timeout=None) as lock:
            renewing = asyncio.create_task(_renew(lock))
            try:
                yield
            finally:
                renewing.cancel()
    finally:
        await client.aclose()


async def _renew(lock: Lock) -> None:
    while True:
        await asyncio.sleep(LOCK_TIMEOUT_S / 3)
        await lock.reacquire()


def named_actors(namespace: str) -> list[str]:
    """The names of the live named actors in `namespace`."""
    listed = ray.util.list_named_actors(all_namespaces=True)
    return [a["name"] for a in listed if a.get("namespace") == namespace]


async def retire_other_releases(release: str, namespace: str) -> list[str]:
    """Drain and stop every actor of a release other than `release`; their names, retired."""
    names = await asyncio.to_thread(named_actors, namespace)
    others = {r: bases for r, bases in releases_running(names).items() if r != release}
    if not others:
        return []
    log.warning(
        "release %s takes over from %s: draining their actors", release, ", ".join(sorted(others))
    )
    started = time.monotonic()
    old = {versioned(b, r): b for r, bases in others.items() for b in bases}
    for stage in in_retire_order(old):
        await asyncio.gather(*(_drain(name, namespace) for name in stage))
        await asyncio.gather(*(_stop(name, namespace) for name in stage))
    log.warning(
        "release %s took over: %d actors retired in %.1f s",
        release,
        len(old),
        time.monotonic() - started,
    )
    return sorted(old)


async def _drain(name: str, namespace: str) -> None:
    handle = _lookup(name, namespace)
    if handle is None or not hasattr(handle, "drain"):
        return  # gone already, or holds nothing to hand over (the router, the agents)
    try:
        await asyncio.wait_for(handle.drain.remote(), DRAIN_TIMEOUT_S)
    except Exception as exc:  # a crash-stop is safe too: the next release redoes the rest
        log.warning("%s did not drain (%r): stopping it anyway", name, exc)


async def _stop(name: str, namespace: str) -> None:
    handle = _lookup(name, namespace)
    if handle is None:
        return
    ray.kill(handle, no_restart=True)
    # The name is free once the process is gone (and with it, for the store, the file lock).
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while _lookup(name, namespace) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} was killed but is still registered after {GONE_TIMEOUT_S}s")
        await asyncio.sleep(0.1)


def _lookup(name: str, namespace: str) -> Any | None:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def find_in_release(base: str, namespace: str, release: str | None = None) -> Any:
    """The live actor `base` (`store`, `session-host-0`...) of `release`, or of the one release
    running when None. Raises ValueError when there is none, or two releases and no choice."""
    names = named_actors(namespace)
    if base in names:  # unversioned (the local services)
        return ray.get_actor(base, namespace=namespace)
    releases = {n: split_versioned(n) for n in names}
    matches = [
        n for n, (b, r) in releases.items() if b == base and r is not None and release in (None, r)
    ]
    if len(matches) != 1:
        raise ValueError(_not_one(base, matches))
    return ray.get_actor(matches[0], namespace=namespace)


def _not_one(base: str, matches: Sequence[str]) -> str:
    if not matches:
        return f"no live actor {base!r}: is the platform running?"
    return f"{base!r} runs in several releases ({', '.join(matches)}): name the release"
