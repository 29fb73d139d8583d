"""A background send (`dispatch`, a sweep) that raised is taken up again by the live outbox: a
transient failure (the store out of reach) is retried until its deadline, a bug dead-letters the
message. No restart and no sweep needed (docs/outbox.md, "Background sends that raise")."""

from __future__ import annotations

import asyncio

from emulator_harness import TOKEN, USER
from outbox_harness import PNID, OutboxRig, outbox_rig

from whatsray.outbox import OutboundRecord
from whatsray.retries import Backoff
from whatsray.whatsapp.graph_client import GraphClient

QUICK = Backoff(initial_s=1.0, max_s=10.0)


class ActorDiedError(Exception):
    """Named as Ray's: the Store actor died and is being restarted (`is_transient` knows it)."""


def failing_reads(rig: OutboxRig, fail: dict[str, list[Exception]]) -> list[str]:
    """`get_outbound(id)` raises the errors queued for that id, one per call, then works.
    Returns the ids of the calls that raised."""
    get_outbound = rig.ledger.get_outbound
    raised: list[str] = []

    async def flaky(outbound_id: str) -> OutboundRecord | None:
        errors = fail.get(outbound_id)
        if errors:
            raised.append(outbound_id)
            raise errors.pop(0)
        return await get_outbound(outbound_id)

    rig.ledger.get_outbound = flaky  # type: ignore[method-assign]
    return raised


async def test_a_background_send_the_store_failed_is_retried_in_order_and_sent_once() -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        first = rig.reply("t1", USER, "a", "b")
        later = rig.reply("t2", USER, "c")
        for item in [*first, *later]:
            await rig.ledger.record_outbound(item)  # as the admin API or a tool records them
        raised = failing_reads(rig, {"t1:1": [ActorDiedError("store restarting")] * 3})

        outbox = rig.outbox(background_retry=QUICK)
        await outbox.dispatch(first)
        await outbox.dispatch(later)  # the same recipient: waits for t1's lane, never overtakes
        await outbox.wait_idle()
        await rig.settle()

        assert raised == ["t1:1"] * 3
        assert rig.texts(USER) == ["a", "b", "c"]
        for item in [*first, *later]:
            stored = await rig.ledger.get_outbound(item.outbound_id)
            assert stored is not None and stored.status != "pending", item.outbound_id
        assert rig.ledger.dead_letters == {}
        await outbox.close()


async def test_a_background_send_still_failing_at_its_deadline_is_left_to_the_sweep() -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        items = rig.reply("t1", USER, "a", "b")
        for item in items:
            await rig.ledger.record_outbound(item)
        outage: list[Exception] = [ActorDiedError("store down")] * 1000
        raised = failing_reads(rig, {"t1:0": outage})

        outbox = rig.outbox(background_retry=QUICK, background_deadline_s=60.0)
        await outbox.dispatch(items)
        await outbox.wait_idle()  # it gave up: nothing runs any more

        assert len(raised) > 2  # retried, with backoff, until the deadline
        assert rig.texts(USER) == []
        assert [r.status for r in rig.ledger.records.values()] == ["pending", "pending"]
        assert rig.ledger.dead_letters == {}  # an outage is not the message's fault

        outage.clear()  # the store is back: the sweep sends both, in order, once
        assert await outbox.sweep_pending(older_than_s=0.0) == 2
        await outbox.wait_idle()
        await rig.settle()
        assert rig.texts(USER) == ["a", "b"]
        await outbox.close()


async def test_a_background_send_that_raises_for_a_bug_is_dead_lettered_and_replayable() -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        items = rig.reply("t1", USER, "broken", "fine")
        for item in items:
            await rig.ledger.record_outbound(item)
        raised = failing_reads(rig, {"t1:0": [KeyError("a bug")]})

        outbox = rig.outbox(background_retry=QUICK)
        await outbox.dispatch(items)
        await outbox.wait_idle()

        assert raised == ["t1:0"]  # a bug is not retried
        assert rig.texts(USER) == ["fine"]  # the later part still goes out
        [letter] = rig.ledger.dead_letters.values()
        assert (letter.outbound_id, letter.reason) == ("t1:0", "internal_error:KeyError")
        assert letter.details is not None and "a bug" in letter.details
        stored = await rig.ledger.get_outbound("t1:0")
        assert stored is not None and stored.status == "dead"

        replay = await outbox.replay_dead_letter(letter.dead_letter_id)
        await outbox.wait_idle()
        assert replay.wamid is not None
        assert rig.texts(USER) == ["fine", "broken"]
        await outbox.close()


async def test_read_receipts_that_hang_never_hold_up_a_reply() -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        graph = GraphClient(rig.http, TOKEN, PNID, base_url="http://emulator")
        release, two_hung = asyncio.Event(), asyncio.Event()
        hung: list[str] = []

        async def hanging_read(message_id: str, typing_indicator: bool = False) -> None:
            hung.append(message_id)
            if len(hung) == 2:
                two_hung.set()
            await release.wait()  # Meta does not answer the read receipts

        graph.mark_as_read = hanging_read  # type: ignore[method-assign]
        outbox = rig.outbox(graph=graph, max_requests=4)
        await outbox.mark_reads([f"wamid.in{i}" for i in range(10)])
        await two_hung.wait()  # the receipts took what they may of the request slots

        # Bounded only so that a broken run fails instead of hanging.
        [record] = await asyncio.wait_for(outbox.submit(rig.reply("t1", USER, "hello")), 30)
        assert record.wamid is not None and rig.texts(USER) == ["hello"]
        assert len(hung) == 2  # half the slots at most; the others wait their turn
        release.set()
        await outbox.wait_idle()
        assert len(hung) == 10
        await outbox.close()
