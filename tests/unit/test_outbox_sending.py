"""The outbox against the real emulator (in-process, fake clock): order, limits, retries, DLQ."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from emulator_harness import OTHER_USER, USER
from outbox_harness import outbox_rig

from tests.support.metrics import MetricsProbe
from whatsray import metrics
from whatsray.outbox import RetryPolicy


async def test_parts_of_a_reply_go_out_in_order_and_are_marked_sent(recorded: MetricsProbe) -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        outbox = rig.outbox()
        records = await outbox.submit(rig.reply("t1", USER, "one", "two", "three"))

        assert rig.texts(USER) == ["one", "two", "three"]
        assert [r.outbound_id for r in records] == ["t1:0", "t1:1", "t1:2"]
        assert [r.wamid for r in records] == [r.wamid for r in rig.accepted(USER)]
        assert all(r.status in {"sent", "delivered", "read"} for r in records)
        # The stable id travels as biz_opaque_callback_data.
        sent_ids = [r.body["biz_opaque_callback_data"] for r in rig.accepted(USER)]
        assert sent_ids == ["t1:0", "t1:1", "t1:2"]
        assert recorded.value("whatsray_outbox_sends_total", result="sent") == 3


async def test_two_replies_to_one_recipient_never_interleave() -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        await rig.harness.control("POST", "faults", json={"latency_s": 0.001})  # sends yield
        outbox = rig.outbox()
        first = rig.reply("a", USER, "a0", "a1", "a2")
        second = rig.reply("b", USER, "b0", "b1", "b2")
        await asyncio.gather(outbox.submit(first), outbox.submit(second))

        texts = rig.texts(USER)
        assert texts in (["a0", "a1", "a2", "b0", "b1", "b2"], ["b0", "b1", "b2", "a0", "a1", "a2"])


async def test_the_same_items_submitted_twice_are_sent_once(recorded: MetricsProbe) -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        outbox = rig.outbox()
        items = rig.reply("t1", USER, "hello", "world")
        first = await outbox.submit(items)
        again = await outbox.submit(items)

        assert rig.texts(USER) == ["hello", "world"]
        assert [r.wamid for r in again] == [r.wamid for r in first]
        assert recorded.value("whatsray_outbox_events_total", event="already_done") == 2


async def test_concurrent_duplicate_submits_send_once() -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        await rig.harness.control("POST", "faults", json={"latency_s": 0.001})  # sends yield
        outbox = rig.outbox()
        items = rig.reply("t1", USER, "hello", "world")
        results = await asyncio.gather(*(outbox.submit(items) for _ in range(3)))

        assert rig.texts(USER) == ["hello", "world"]
        assert len({tuple(r.wamid for r in records) for records in results}) == 1


async def test_a_restarted_outbox_does_not_send_again(recorded: MetricsProbe) -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        items = rig.reply("t1", USER, "hello", "world")
        await rig.outbox().submit(items)
        sent_before = recorded.value("whatsray_outbox_sends_total", result="sent")

        restarted = rig.outbox()  # a new instance over the same ledger
        records = await restarted.submit(items)

        assert rig.texts(USER) == ["hello", "world"]
        assert (
            recorded.value("whatsray_outbox_sends_total", result="sent") == sent_before
        )  # nothing sent by the restarted one
        assert all(r.wamid for r in records)


async def test_a_retried_turn_with_new_text_does_not_resend_and_keeps_the_recorded_body() -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        outbox = rig.outbox()
        await outbox.submit(rig.reply("t1", USER, "first answer"))
        # The turn is retried and the model says something else under the same ids.
        records = await outbox.submit(rig.reply("t1", USER, "another answer"))

        assert rig.texts(USER) == ["first answer"]
        assert records[0].body["text"]["body"] == "first answer"


async def test_the_throughput_bucket_waits_instead_of_hitting_130429(
    recorded: MetricsProbe,
) -> None:
    async with outbox_rig(throughput_mps=5.0) as rig:
        users = [f"+1555000{i:04d}" for i in range(15)]
        for user in users:
            rig.open_window(user)
        outbox = rig.outbox(throughput_mps=5.0)
        await asyncio.gather(
            *(outbox.submit([rig.item(f"t{i}:0", f"hi {i}", u)]) for i, u in enumerate(users))
        )

        assert len(rig.accepted()) == 15
        assert rig.rejected_codes() == []
        waits = recorded.value("whatsray_rate_limit_wait_seconds_count", limiter="throughput")
        assert waits > 0
        assert recorded.value("whatsray_outbox_sends_total", result="retried") == 0


async def test_the_pair_rate_waits_per_recipient_without_blocking_others(
    recorded: MetricsProbe,
) -> None:
    async with outbox_rig(pair_burst=3, pair_refill_seconds=6.0) as rig:
        rig.open_window(USER)
        rig.open_window(OTHER_USER)
        outbox = rig.outbox(pair_burst=3, pair_refill_s=6.0)
        long_reply = rig.reply("slow", USER, *[f"part {i}" for i in range(7)])
        slow = asyncio.create_task(outbox.submit(long_reply))
        await asyncio.sleep(0)
        await outbox.submit([rig.item("fast:0", "for the other user", OTHER_USER)])
        await slow

        assert rig.texts(USER) == [f"part {i}" for i in range(7)]
        assert rig.rejected_codes() == []  # no 131056
        assert recorded.value("whatsray_rate_limit_wait_seconds_count", limiter="pair") >= 4
        seqs = {r.body["text"]["body"]: r.seq for r in rig.accepted()}
        # The other user's message did not queue behind the slow recipient's waits.
        assert seqs["for the other user"] < seqs["part 3"]


@pytest.mark.parametrize("code", [130429, 131056, 131000, 131016])
async def test_transient_errors_are_retried_then_delivered(
    code: int, recorded: MetricsProbe
) -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        await rig.harness.control(
            "POST", "faults", json={"next_errors": {"code": code, "count": 2}}
        )
        outbox = rig.outbox()
        [record] = await outbox.submit(rig.reply("t1", USER, "eventually"))

        assert rig.rejected_codes() == [code, code]
        assert rig.texts(USER) == ["eventually"]
        assert record.status != "pending" and record.wamid is not None
        assert record.attempts == 3
        retried = {"result": "retried", "error_code": metrics.send_error_code(code)}
        assert recorded.value("whatsray_outbox_sends_total", **retried) == 2
        assert recorded.value("whatsray_dead_letters_total") == 0


async def test_exhausted_retries_go_to_the_dead_letter_queue() -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        await rig.harness.control(
            "POST", "faults", json={"next_errors": {"code": 131000, "count": 10}}
        )
        outbox = rig.outbox(retry=RetryPolicy(max_attempts=3))
        [record] = await outbox.submit(rig.reply("t1", USER, "never"))

        assert rig.rejected_codes() == [131000] * 3
        assert record.status == "dead"
        [letter] = rig.ledger.dead_letters.values()
        assert (letter.outbound_id, letter.reason, letter.error_code) == (
            "t1:0",
            "retries_exhausted:ServerError",
            131000,
        )


async def test_a_permanent_error_is_dead_lettered_and_replay_delivers_once() -> None:
    async with outbox_rig() as rig:
        rig.open_window(USER)
        rig.open_window(OTHER_USER)
        await rig.harness.control(
            "POST", "faults", json={"recipient_errors": {OTHER_USER: {"code": 131026}}}
        )
        outbox = rig.outbox()
        [bad] = await outbox.submit(rig.reply("t1", OTHER_USER, "unlucky"))
        [good] = await outbox.submit(rig.reply("t2", USER, "fine"))

        assert bad.status == "dead" and good.wamid is not None
        assert rig.rejected_codes() == [131026]  # a permanent error is not retried
        [(dead_letter_id, letter)] = rig.ledger.dead_letters.items()
        assert letter.reason == "permanent_error:UndeliverableError"
        assert letter.error_code == 131026

        await rig.harness.control("DELETE", "faults")
        replays = await asyncio.gather(
            outbox.replay_dead_letter(dead_letter_id), outbox.replay_dead_letter(dead_letter_id)
        )
        again = await outbox.replay_dead_letter(dead_letter_id)

        assert rig.texts(OTHER_USER) == ["unlucky"]
        assert {r.wamid for r in [*replays, again]} == {rig.accepted(OTHER_USER)[0].wamid}
        replayed = rig.ledger.dead_letters[dead_letter_id]
        assert replayed.replay_outbound_id == again.outbound_id
        assert replayed.replayed_at is not None
        assert (await rig.ledger.get_outbound("t1:0")).status == "dead"  # the original stays


async def test_a_failed_status_webhook_is_dead_lettered_once() -> None:
    async with outbox_rig(duplicate_probability=1.0) as rig:
        rig.open_window(USER)
        fault = {"next_errors": {"code": 131026, "count": 1, "mode": "async"}}
        await rig.harness.control("POST", "faults", json=fault)
        outbox = rig.outbox()
        [record] = await outbox.submit(rig.reply("t1", USER, "accepted, then failed"))
        await rig.harness.advance(5)

        assert record.wamid is not None
        assert (await rig.ledger.get_outbound("t1:0")).status == "dead"
        [letter] = rig.ledger.dead_letters.values()
        assert (letter.reason, letter.error_code) == ("failed_status:131026", 131026)


async def test_outside_the_window_nothing_reaches_meta() -> None:
    async with outbox_rig() as rig:
        rig.open_window(OTHER_USER, age_s=25 * 3600)  # wrote 25 h ago; USER never wrote
        outbox = rig.outbox()
        [never] = await outbox.submit(rig.reply("t1", USER, "hello?"))
        [stale] = await outbox.submit(rig.reply("t2", OTHER_USER, "hello?"))

        assert never.status == stale.status == "dead"
        assert rig.harness.emulator.requests() == []  # the emulator saw nothing
        reasons = sorted((d.outbound_id, d.reason) for d in rig.ledger.dead_letters.values())
        assert reasons == [("t1:0", "outside_window"), ("t2:0", "outside_window")]


async def test_templates_are_sent_outside_the_window() -> None:
    async with outbox_rig() as rig:
        outbox = rig.outbox()
        template = {"name": "hello_world", "language": {"code": "en_US"}}
        body = {"messaging_product": "whatsapp", "to": USER, "type": "template"}
        item = replace(rig.item("t1:0", "unused", USER), body={**body, "template": template})
        [record] = await outbox.submit([item])

        assert record.wamid is not None
        assert [r.body["type"] for r in rig.accepted(USER)] == ["template"]


async def test_meta_refusing_for_the_window_is_an_outside_window_dead_letter() -> None:
    # No window lookup: the outbox cannot know, Meta (the emulator) refuses with 131047.
    async with outbox_rig(window_failure_mode="async") as rig:
        outbox = rig.outbox(window_lookup=None)
        [record] = await outbox.submit(rig.reply("t1", USER, "too late"))
        await rig.harness.advance(2)

        assert record.wamid is not None  # async mode: accepted, then a failed status
        [letter] = rig.ledger.dead_letters.values()
        assert (letter.reason, letter.error_code) == ("outside_window", 131047)


async def test_submit_refuses_items_for_another_number_and_after_close() -> None:
    async with outbox_rig() as rig:
        outbox = rig.outbox()
        item = rig.item("t1:0", "x", USER)
        foreign = replace(item, phone_number_id="999")
        with pytest.raises(ValueError, match="999"):
            await outbox.submit([foreign])
        await outbox.close()
        with pytest.raises(RuntimeError, match="closed"):
            await outbox.submit([item])
        assert rig.ledger.records == {}
