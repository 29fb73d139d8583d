"""Exactly once across crashes and lost answers: the outbox killed between the send and
`mark_sent`, and a send whose answer timed out. See docs/outbox.md for the one open window."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from emulator_harness import PNID, TOKEN, USER
from outbox_harness import OutboxRig, losing_graph, outbox_rig

from tests.support.metrics import MetricsProbe
from whatsray.outbox import OutboundItem, Outbox, is_ambiguous
from whatsray.whatsapp.emulator import StatusDelays
from whatsray.whatsapp.errors import GraphTimeoutError, ServerError, TransportError
from whatsray.whatsapp.graph_client import GraphClient


async def _killed_mid_send(rig: OutboxRig, items: list[OutboundItem]) -> Outbox:
    """Run an outbox until its send reached the emulator, then kill it before `mark_sent`."""
    async with losing_graph(rig, 1, hang=True) as (graph, transport):
        doomed = rig.outbox(graph=graph)
        task = asyncio.create_task(doomed.submit(items))
        await transport.handled.wait()
        await rig.settle()  # webhooks due now are delivered (to the doomed outbox)
        await doomed.close()
        with pytest.raises(asyncio.CancelledError):
            await task
    return doomed


async def test_recorded_by_an_earlier_outbox_waits_the_grace_then_is_sent_once(
    recorded: MetricsProbe,
) -> None:
    # The ledger does not count attempts before a send (docs/outbox.md, "In memory"): a record
    # another outbox left pending may have reached Meta, so it waits for a status first.
    async with outbox_rig() as rig:
        rig.open_window(USER)
        items = rig.reply("t1", USER, "hello")
        await rig.ledger.record_outbound(items[0])  # the last outbox died right after this

        outbox = rig.outbox(ambiguous_grace_s=10.0)
        [record] = await outbox.submit(items)

        assert rig.texts(USER) == ["hello"]
        assert record.attempts == 1
        assert (
            recorded.value("whatsray_outbox_events_total", event="ambiguous_resend") == 1
        )  # sent after the grace, once


async def test_dispatched_fresh_is_sent_at_once_without_reading_the_ledger(
    recorded: MetricsProbe,
) -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        items = rig.reply("t1", USER, "hello")
        await rig.ledger.record_outbound(items[0])  # the turn's commit recorded it
        reads: list[str] = []
        get_outbound = rig.ledger.get_outbound

        async def counting_get(outbound_id: str) -> Any:
            reads.append(outbound_id)
            return await get_outbound(outbound_id)

        rig.ledger.get_outbound = counting_get  # type: ignore[method-assign]
        outbox = rig.outbox(ambiguous_grace_s=10.0)
        await outbox.dispatch(items, fresh=[True], windows={items[0].chat: rig.time.now()})
        await outbox.wait_idle()

        assert rig.texts(USER) == ["hello"]
        assert reads == []
        assert recorded.value("whatsray_outbox_events_total", event="ambiguous_resend") == 0
        stored = await get_outbound("t1:0")
        assert stored is not None and (stored.status, stored.attempts) != ("pending", 0)


async def test_killed_after_the_send_with_its_status_already_seen_is_not_resent(
    recorded: MetricsProbe,
) -> None:
    async with outbox_rig() as rig:  # the `sent` status is immediate
        rig.open_window(USER)
        items = rig.reply("t1", USER, "hello")
        await _killed_mid_send(rig, items)
        sent_before = recorded.value("whatsray_outbox_sends_total", result="sent")

        stored = await rig.ledger.get_outbound("t1:0")
        assert stored is not None and stored.wamid == rig.accepted(USER)[0].wamid

        restarted = rig.outbox()
        [record] = await restarted.submit(items)

        assert rig.texts(USER) == ["hello"]
        assert record.wamid == stored.wamid
        assert recorded.value("whatsray_outbox_sends_total", result="sent") == sent_before
        assert recorded.value("whatsray_outbox_events_total", event="ambiguous_resend") == 0


async def test_killed_after_the_send_waits_for_a_late_status_instead_of_resending(
    recorded: MetricsProbe,
) -> None:
    delays = StatusDelays(sent=5.0, delivered=6.0, read=7.0)
    async with outbox_rig(status_delays=delays) as rig:
        rig.open_window(USER)
        items = rig.reply("t1", USER, "hello")
        await _killed_mid_send(rig, items)
        pending = await rig.ledger.get_outbound("t1:0")
        assert pending is not None and pending.status == "pending"

        restarted = rig.outbox(ambiguous_grace_s=10.0)
        [record] = await restarted.submit(items)

        assert rig.texts(USER) == ["hello"]
        assert record.wamid == rig.accepted(USER)[0].wamid
        assert recorded.value("whatsray_outbox_events_total", event="ambiguous_resend") == 0


async def test_the_open_window_a_status_later_than_the_grace_means_a_second_send(
    recorded: MetricsProbe,
) -> None:
    # The one case we cannot close: Meta took the message, we died before storing the wamid,
    # and its status webhook comes later than the grace period. We resend, and say so.
    delays = StatusDelays(sent=20.0, delivered=None, read=None)
    async with outbox_rig(status_delays=delays) as rig:
        rig.open_window(USER)
        items = rig.reply("t1", USER, "hello")
        await _killed_mid_send(rig, items)

        restarted = rig.outbox(ambiguous_grace_s=10.0)
        [record] = await restarted.submit(items)
        await rig.harness.advance(30)  # both `sent` statuses arrive

        assert rig.texts(USER) == ["hello", "hello"]
        assert recorded.value("whatsray_outbox_events_total", event="ambiguous_resend") == 1
        seen = recorded.value("whatsray_outbox_events_total", event="duplicate_send_seen")
        assert seen == 1  # detected and counted
        stored = await rig.ledger.get_outbound("t1:0")
        assert stored is not None and stored.wamid == record.wamid


async def test_a_timed_out_send_that_went_through_is_not_sent_again(recorded: MetricsProbe) -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        async with losing_graph(rig, 1) as (graph, _):
            outbox = rig.outbox(graph=graph)
            [record] = await outbox.submit(rig.reply("t1", USER, "slow answer"))

        assert rig.texts(USER) == ["slow answer"]
        assert record.wamid == rig.accepted(USER)[0].wamid
        assert recorded.value("whatsray_outbox_sends_total", result="retried") == 1
        assert (
            recorded.value("whatsray_outbox_sends_total", result="sent") == 0
        )  # the wamid came from the status webhook


async def test_a_timed_out_send_with_no_status_is_retried() -> None:
    async with outbox_rig(status_delays=StatusDelays(sent=None, delivered=None, read=None)) as rig:
        rig.open_window(USER)
        async with losing_graph(rig, 1) as (graph, _):
            outbox = rig.outbox(graph=graph)
            [record] = await outbox.submit(rig.reply("t1", USER, "lost answer"))

        # Timeouts are retried (documented): here the first send did go through.
        assert rig.texts(USER) == ["lost answer", "lost answer"]
        assert record.wamid == rig.accepted(USER)[1].wamid
        assert record.attempts == 2


def test_only_failures_that_may_have_reached_meta_are_ambiguous() -> None:
    refused = TransportError("refused")
    refused.__cause__ = httpx.ConnectError("connection refused")
    reset = TransportError("reset")
    reset.__cause__ = httpx.RemoteProtocolError("peer closed")
    timed_out = GraphTimeoutError("read timeout")
    timed_out.__cause__ = httpx.ReadTimeout("late")
    connect_timeout = GraphTimeoutError("connect timeout")
    connect_timeout.__cause__ = httpx.ConnectTimeout("no route")

    assert is_ambiguous(timed_out) and is_ambiguous(reset)
    assert not is_ambiguous(refused) and not is_ambiguous(connect_timeout)
    assert not is_ambiguous(ServerError("boom", code=131000))


class HeldTransport(httpx.AsyncBaseTransport):
    """Forwards to the emulator once `release` is set: a request stays on the wire until then."""

    def __init__(self, inner: httpx.AsyncClient) -> None:
        self._inner = inner
        self.on_wire = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        self.on_wire.set()
        await self.release.wait()
        answer = await self._inner.request(
            request.method, str(request.url), headers=dict(request.headers), content=content
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


async def test_a_draining_outbox_finishes_the_send_on_the_wire_and_hands_the_rest_over() -> None:
    # A new release takes the number over (actors/rollout.py): what the old outbox had on the
    # wire is answered and written down, what it had not started stays pending for the next one.
    async with outbox_rig() as rig:
        rig.open_window(USER)
        items = rig.reply("t1", USER, "first", "second")  # one lane: "second" waits its turn
        for item in items:
            await rig.ledger.record_outbound(item)
        transport = HeldTransport(rig.http)
        async with httpx.AsyncClient(transport=transport) as client:
            old = rig.outbox(graph=GraphClient(client, TOKEN, PNID, base_url="http://emulator"))
            await old.dispatch(items, fresh=[True, True])  # as a turn's commit hands them over
            await transport.on_wire.wait()
            draining = asyncio.create_task(old.drain())
            transport.release.set()
            await draining
        assert rig.texts(USER) == ["first"]
        first, second = [await rig.ledger.get_outbound(i.outbound_id) for i in items]
        assert first is not None and first.wamid is not None and first.status != "pending"
        assert second is not None and second.status == "pending"

        new = rig.outbox()
        assert await new.resume_pending() == 1
        await new.wait_idle()
        assert rig.texts(USER) == ["first", "second"]  # each once, in order
