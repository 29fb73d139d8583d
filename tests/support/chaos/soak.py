"""The whole soak: load and chaos on a running platform, then quiet, then the counts (`soak`);
`run_soak` runs it on the whole app on a local Ray."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.chaos.accounting import Outcome, account, unresolved
from tests.support.chaos.actions import Chaos
from tests.support.chaos.load import Load
from tests.support.chaos.plan import ChaosPlan, chaos_agents, plan_events
from tests.support.quiet import wait_quiet
from tests.support.ray_serve import running_whatsray


@dataclass(frozen=True)
class Target:
    """A running platform to soak (`tests/support/ray_serve.py`'s `RunningWhatsray`)."""

    api_url: str
    emulator_url: str
    app_secret: str
    admin_token: str
    restart_valkey: Callable[[float], None]
    wait_quiet: Callable[[float], Any]  # raises AssertionError when not quiet in time


def soak(target: Target, plan: ChaosPlan, *, progress: Callable[[str], None] = print) -> Outcome:
    """Load + chaos for `plan.seconds`, then quiet, then the counts."""
    return asyncio.run(_soak(target, plan, progress))


async def _soak(target: Target, plan: ChaosPlan, progress: Callable[[str], None]) -> Outcome:
    async with httpx.AsyncClient(base_url=target.emulator_url, timeout=30) as emulator:
        chaos_statuses = {
            "max_copies": plan.status_copies,
            "shuffle_window_s": plan.status_shuffle_s,
        }
        (
            await emulator.post("/emulator/faults", json={"statuses": chaos_statuses})
        ).raise_for_status()
    events = plan_events(plan)
    load = Load(plan, target.emulator_url, target.api_url, target.app_secret)
    chaos = Chaos(plan, target.emulator_url, target.api_url, target.restart_valkey)
    started = time.monotonic()
    progress(f"load: {plan.rate:g} msg/s over {plan.chats} chats for {plan.seconds:g} s")
    try:
        await asyncio.gather(load.run(plan.seconds), chaos.run(events, started))
    finally:
        await load.aclose()
    progress(f"load done after {time.monotonic() - started:.0f} s; waiting for quiet")
    async with httpx.AsyncClient(base_url=target.emulator_url, timeout=60) as emulator:
        (await emulator.delete("/emulator/faults")).raise_for_status()
    not_quiet = None
    try:
        await asyncio.to_thread(target.wait_quiet, plan.quiet_within_s)
    except AssertionError as exc:
        not_quiet = str(exc)[:2000]
    seconds = time.monotonic() - started
    async with httpx.AsyncClient(base_url=target.emulator_url, timeout=120) as emulator:
        records = (await emulator.get("/emulator/outbound")).json()
    outcome = account(load.messages, records)
    outcome.not_quiet, outcome.seconds, outcome.events = not_quiet, seconds, events
    outcome.late_posts_failed, outcome.skipped_ticks = load.late_failed, load.skipped
    outcome.unresolved, outcome.unresolved_items = unresolved(target.api_url, target.admin_token)
    outcome.actors_not_back = await asyncio.to_thread(chaos.not_back)
    return outcome


@contextlib.contextmanager
def run_soak(
    data_dir: Path, plan: ChaosPlan, *, progress: Callable[[str], None] = print
) -> Iterator[Outcome]:
    """`soak` on the whole app on a local Ray in `data_dir` (`tests/support/ray_serve.py`'s
    `running_whatsray`: the app, its own Valkey with the AOF on, the emulator as WhatsApp, the
    soak's agents file); yields the outcome while the platform still runs (its Ray logs for
    `evidence`), and stops it on the way out."""
    agents = chaos_agents(data_dir)
    with running_whatsray(data_dir, partitions=plan.partitions, agents_file=agents) as app:
        secret, token = app.settings.app_secret, app.settings.admin_token
        assert secret is not None and token is not None

        def restart_valkey(down_s: float) -> None:
            app.valkey.stop()
            time.sleep(down_s)
            app.valkey.start()

        target = Target(
            api_url=str(app.api.base_url).rstrip("/"),
            emulator_url=str(app.emulator.base_url).rstrip("/"),
            app_secret=secret.get_secret_value(),
            admin_token=token.get_secret_value(),
            restart_valkey=restart_valkey,
            wait_quiet=lambda s: wait_quiet(app.settings, app.emulator, within_s=s),
        )
        yield soak(target, plan, progress=progress)
