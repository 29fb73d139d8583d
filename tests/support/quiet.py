"""Wait until the platform and the emulator are quiet: how a Ray test proves that something did
not happen ("no duplicate was sent"), instead of sleeping for a while and hoping.

Quiet means, at two polls in a row:

- every inbox partition has no entry waiting: none appended and not yet delivered to the session
  hosts' group (the group's lag; the whole stream while no group exists), none delivered and not
  acked (`Inbox.pending_count`; a host acks only after the turn is committed and its replies
  handed to the outbox);
- every outbox is idle (`OutboxActor.in_flight() == 0`: no send, retry, grace wait for a status,
  resume after a restart, or write behind one is running);
- the emulator has no webhook to deliver (`pending` of `GET /emulator/webhooks/pending`: inbound
  messages being retried, status webhooks not due yet, batching, or being delivered).

Each step of a message's path starts the next before it ends (the emulator's webhook is in the
inbox before it counts as delivered, a turn's replies are in the outbox before its entry is
acked, a send's status webhooks are queued in the emulator before the send returns), so once all
three are quiet nothing is left that could still send a message, and a duplicate that was going
to happen is already in the emulator's outbound list.

Not covered: the scheduler's timers (a job due later is not "in flight"), and work a test starts
outside the platform's actors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import redis.asyncio as aioredis

from whatsray.inbox import Inbox
from whatsray.settings import Settings
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID

T = TypeVar("T")

__all__ = ["Activity", "wait_quiet"]


@dataclass(frozen=True)
class Activity:
    """What was still going on at one poll (all zero: quiet)."""

    undelivered: dict[int, int]  # by partition: appended, not yet read by the group
    unacked: dict[int, int]  # by partition: read by a host, not acked yet
    outbox_in_flight: dict[str, int]  # by business number
    emulator_webhooks: dict[str, int]  # `GET /emulator/webhooks/pending`: pending, due...

    @property
    def quiet(self) -> bool:
        counts = [
            *self.undelivered.values(),
            *self.unacked.values(),
            *self.outbox_in_flight.values(),
            self.emulator_webhooks["pending"],
        ]
        return not any(counts)


def wait_quiet(
    settings: Settings,
    emulator: httpx.Client,
    *,
    within_s: float = 120.0,
    poll_s: float = 0.2,
    polls: int = 2,
) -> Activity:
    """Block until the platform started with `settings` and its emulator are quiet at `polls`
    polls in a row, `poll_s` apart; fail the test (with what was still busy) after `within_s`.

    Generous by default: a restarted actor, a retried webhook (the emulator backs off up to a
    minute) or the outbox's grace wait for a status (10 s) all take their time."""
    assert settings.redis_url is not None, "the platform's inbox URL"
    return asyncio.run(
        _wait(
            settings.redis_url,
            settings.partitions,
            settings.phone_number_ids or [DEFAULT_PHONE_NUMBER_ID],
            emulator,
            within_s=within_s,
            poll_s=poll_s,
            polls=polls,
        )
    )


async def until_calm(
    probe: Callable[[], Awaitable[T]],
    quiet: Callable[[T], bool],
    *,
    within_s: float = 30.0,
    poll_s: float = 0.05,
    polls: int = 2,
) -> T:
    """Poll `probe` until `quiet` holds for `polls` polls in a row; the last probe's answer.
    Fails the test, showing what was still busy, after `within_s`. Every wait for quiet (on Ray
    here, and the in-process `Pipeline.quiet` and `Admin.quiet`) is this loop."""
    deadline = time.monotonic() + within_s
    in_a_row = 0
    while True:
        seen = await probe()
        in_a_row = in_a_row + 1 if quiet(seen) else 0
        if in_a_row >= polls:
            return seen
        assert time.monotonic() < deadline, f"not quiet within {within_s:.0f} s: {seen}"
        await asyncio.sleep(poll_s)


async def _wait(
    redis_url: str,
    partitions: int,
    phone_number_ids: Sequence[str],
    emulator: httpx.Client,
    *,
    within_s: float,
    poll_s: float,
    polls: int,
) -> Activity:

    import serve_app  # the composition root names the actors

    outboxes = {
        pnid: serve_app.find_actor(serve_app.outbox_name(pnid)) for pnid in phone_number_ids
    }
    inbox = Inbox.from_url(redis_url, partitions=partitions)
    raw = aioredis.Redis.from_url(redis_url)
    http = httpx.AsyncClient(base_url=emulator.base_url, timeout=30)
    try:
        return await until_calm(
            lambda: _poll(inbox, raw, outboxes, http),
            lambda activity: activity.quiet,
            within_s=within_s,
            poll_s=poll_s,
            polls=polls,
        )
    finally:
        await http.aclose()
        await inbox.close()
        await raw.aclose()


async def _poll(
    inbox: Inbox, raw: aioredis.Redis, outboxes: dict[str, Any], emulator: httpx.AsyncClient
) -> Activity:
    partitions = range(inbox.partitions)
    undelivered = {p: await _group_lag(raw, inbox, p) for p in partitions}
    unacked = {p: await inbox.pending_count(p) for p in partitions}
    in_flight = await asyncio.gather(*(h.in_flight.remote() for h in outboxes.values()))
    webhooks = await emulator.get("/emulator/webhooks/pending")
    webhooks.raise_for_status()
    return Activity(
        undelivered=undelivered,
        unacked=unacked,
        outbox_in_flight=dict(zip(outboxes, in_flight, strict=True)),
        emulator_webhooks=webhooks.json(),
    )


async def _group_lag(raw: aioredis.Redis, inbox: Inbox, partition: int) -> int:
    """Entries of the partition's stream not yet delivered to the hosts' group (XINFO GROUPS
    `lag`). No stream: 0; a stream without the group: all of its entries."""
    key = inbox.stream_key(partition)
    if not await raw.exists(key):
        return 0
    for group in await raw.xinfo_groups(key):
        if _text(group["name"]) == inbox.group:
            lag = group.get("lag")
            if lag is None:  # Redis can't tell (entries deleted): compare the last ids
                info = await raw.xinfo_stream(key)
                done = _text(group["last-delivered-id"]) == _text(info["last-generated-id"])
                return 0 if done else 1
            return int(lag)
    return int(await raw.xlen(key))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
