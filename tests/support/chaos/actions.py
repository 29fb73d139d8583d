"""The chaos: the planned events carried out against the platform (actor kills, the ingress
replica's kill, a Valkey restart, Graph faults), and whether every killed actor came back."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.chaos.plan import ACTOR_KINDS, AGENT, ChaosEvent, ChaosPlan
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID


class Chaos:
    """Carries out the planned events against the platform (Ray must be initialised here)."""

    def __init__(
        self,
        plan: ChaosPlan,
        emulator_url: str,
        api_url: str,
        restart_valkey: Callable[[float], None],
    ) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed + 2)
        self.emulator_url = emulator_url
        self.api_url = api_url
        self.restart_valkey = restart_valkey
        self.killed: dict[str, int] = {}  # actor name -> restarts it had when last killed
        self.killed_replicas: set[str] = set()

    async def run(self, events: list[ChaosEvent], started: float) -> None:
        tasks = []
        for event in events:
            delay = started + event.at_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._do(event, started)))
        await asyncio.gather(*tasks)

    async def _do(self, event: ChaosEvent, started: float) -> None:
        try:
            if event.kind in ACTOR_KINDS:
                await asyncio.to_thread(self._kill, event)
            elif event.kind == "valkey_restart":
                event.done_at_s = time.monotonic() - started
                await asyncio.to_thread(self.restart_valkey, self.plan.valkey_down_s)
                event.target = f"down {self.plan.valkey_down_s:g} s"
            elif event.kind == "graph_5xx":
                event.done_at_s = time.monotonic() - started
                await self._faults({"error_rate": self.plan.burst_error_rate})
                await asyncio.sleep(self.plan.burst_s)
                await self._faults({"error_rate": 0.0})
                event.target = (
                    f"{self.plan.burst_error_rate:.0%} of requests for {self.plan.burst_s:g} s"
                )
            elif event.kind == "storm_130429":
                event.done_at_s = time.monotonic() - started
                storm = {"code": 130429, "count": self.plan.storm_sends}
                await self._faults({"next_errors": storm})
                event.target = f"next {self.plan.storm_sends} sends"
            if event.done_at_s is None:
                event.done_at_s = time.monotonic() - started
            if event.kind in ACTOR_KINDS:
                event.back_after_s = await asyncio.to_thread(self._wait_back, event)
            else:
                event.back_after_s = time.monotonic() - started - event.done_at_s
        except Exception as exc:  # a chaos step that failed is reported, the soak goes on
            event.note = f"{type(exc).__name__}: {exc}"

    async def _faults(self, body: dict[str, Any]) -> None:
        async with httpx.AsyncClient(base_url=self.emulator_url, timeout=30) as http:
            (await http.post("/emulator/faults", json=body)).raise_for_status()

    def _kill(self, event: ChaosEvent) -> None:
        import ray

        if event.kind == "ingress":
            name = ingress_replicas()[0]
            ray.kill(ray.get_actor(name, namespace="serve"))
            self.killed_replicas.add(name)
            event.target = name
            return
        name = self._target(event.kind)
        handle = platform_actor(name)
        _answers(handle, within_s=120)  # a kill hits a live actor, not one still restarting
        event.restarts_before = restarts_of(handle)
        ray.kill(handle, no_restart=False)
        self.killed[name] = event.restarts_before
        event.target = name

    def _target(self, kind: str) -> str:
        import serve_app

        if kind == "session_host":
            return serve_app.session_host_name(self.rng.randrange(self.plan.partitions))
        return {
            "outbox": serve_app.outbox_name(DEFAULT_PHONE_NUMBER_ID),
            "store": serve_app.STORE_NAME,
            "router": serve_app.ROUTER_NAME,
            "agent_worker": serve_app.agent_worker_name(AGENT, 0),
            "scheduler": serve_app.SCHEDULER_NAME,
        }[kind]

    def _wait_back(self, event: ChaosEvent) -> float | None:
        start = time.monotonic()
        if event.kind == "ingress":
            ok = _ingress_back(self.api_url, {event.target}, within_s=180)
        else:
            ok = _answers(platform_actor(event.target), within_s=180)
        return time.monotonic() - start if ok else None

    def not_back(self) -> list[str]:
        """Killed actors that are not alive again with a restart more than before their last
        kill; the ingress without a new replica answering /ready."""
        problems = []
        for name, before in self.killed.items():
            handle = platform_actor(name)
            if not _answers(handle, within_s=60):
                problems.append(f"{name}: does not answer")
                continue
            state, restarts = actor_state(handle)
            if state != "ALIVE" or restarts <= before:
                problems.append(f"{name}: {state}, {restarts} restarts (had {before} at the kill)")
        if self.killed_replicas and not _ingress_back(self.api_url, self.killed_replicas, 60):
            problems.append(f"ingress: no new replica answering /ready ({ingress_replicas()})")
        return problems


def platform_actor(name: str) -> Any:

    import serve_app

    return serve_app.find_actor(name)


def ingress_replicas() -> list[str]:
    import ray

    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a.get("namespace") == "serve" and "#ingress#" in a["name"]
    )


def actor_state(handle: Any) -> tuple[str, int]:
    from ray._private import state

    info = state.actors(actor_id=handle._actor_id.hex())
    return str(info.get("State")), int(info.get("NumRestarts", 0))


def restarts_of(handle: Any) -> int:
    return actor_state(handle)[1]


def _answers(handle: Any, *, within_s: float) -> bool:
    import ray

    ref = handle.call_counts.remote()
    ready, _ = ray.wait([ref], timeout=within_s)
    if not ready:
        ray.cancel(ref)
        return False
    with contextlib.suppress(Exception):
        ray.get(ref)
        return True
    return False


def _ingress_back(api_url: str, killed: set[str], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        fresh = [r for r in ingress_replicas() if r not in killed]
        with contextlib.suppress(httpx.HTTPError):
            if fresh and httpx.get(f"{api_url}/ready", timeout=5).status_code == 200:
                return True
        time.sleep(0.5)
    return False
