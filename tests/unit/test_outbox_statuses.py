"""Status webhooks update outbound records monotonically, whatever order they arrive in."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from emulator_harness import PNID, USER
from outbox_harness import outbox_rig

from tests.support.metrics import MetricsProbe
from whatsray.outbox import InMemoryLedger, OutboundItem, Outbox
from whatsray.whatsapp.events import StatusEvent, StatusValue, WebhookError
from whatsray.whatsapp.graph_client import GraphClient


def _item(outbound_id: str = "t1:0") -> OutboundItem:
    body = {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "x"}}
    return OutboundItem(outbound_id, f"{PNID}:15551234567", PNID, USER, body, "t1", 0, 1.0)


def _status(
    status: StatusValue, wamid: str = "wamid.A", callback: str | None = "t1:0", **kw: object
) -> StatusEvent:
    return StatusEvent(
        idempotency_key=f"{wamid}:{status.value}",
        message_id=wamid,
        status=status,
        biz_opaque_callback_data=callback,
        timestamp=datetime(2025, 6, 1, tzinfo=UTC),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def offline_graph() -> AsyncIterator[GraphClient]:
    """apply_status never calls the Graph API: this client answers 500 to anything."""
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    async with httpx.AsyncClient(transport=transport) as http:
        yield GraphClient(http, "unused", PNID, base_url="http://graph.invalid")


async def test_emulated_statuses_reversed_and_duplicated_end_at_read() -> None:
    async with outbox_rig(duplicate_probability=1.0, out_of_order_probability=1.0) as rig:
        rig.open_window(USER)
        outbox = rig.outbox()
        await outbox.submit(rig.reply("t1", USER, "one", "two"))
        await rig.harness.advance(5)

        for outbound_id in ("t1:0", "t1:1"):
            record = await rig.ledger.get_outbound(outbound_id)
            assert record is not None and record.status == "read"
            seen = [status for status, _ in rig.ledger.history[outbound_id]]
            assert sorted(seen) == ["delivered", "delivered", "read", "read", "sent", "sent"]
            assert seen != sorted(seen, key=["sent", "delivered", "read"].index)  # disordered


async def test_every_order_of_duplicated_statuses_ends_at_read(offline_graph: GraphClient) -> None:
    statuses = [StatusValue.SENT, StatusValue.DELIVERED, StatusValue.READ]
    for order in sorted(set(itertools.permutations(statuses * 2))):
        ledger = InMemoryLedger()
        await ledger.record_outbound(_item())
        outbox = Outbox(PNID, offline_graph, ledger)
        results = [await outbox.apply_status(_status(s)) for s in order]
        assert results[-1] == "read", order
        record = await ledger.get_outbound("t1:0")
        assert record is not None and (record.status, record.wamid) == ("read", "wamid.A")


async def test_a_status_before_mark_sent_is_keyed_on_the_callback_data(
    offline_graph: GraphClient,
) -> None:
    ledger = InMemoryLedger()
    await ledger.record_outbound(_item())
    outbox = Outbox(PNID, offline_graph, ledger)

    assert await outbox.apply_status(_status(StatusValue.DELIVERED)) == "delivered"
    await ledger.mark_sent("t1:0", "wamid.A")  # the send call returns afterwards

    record = await ledger.get_outbound("t1:0")
    assert record is not None and (record.status, record.wamid) == ("delivered", "wamid.A")


async def test_statuses_for_unknown_messages_change_nothing(
    offline_graph: GraphClient, recorded: MetricsProbe
) -> None:
    ledger = InMemoryLedger()
    await ledger.record_outbound(_item())
    outbox = Outbox(PNID, offline_graph, ledger)

    assert await outbox.apply_status(_status(StatusValue.READ, "wamid.X", callback=None)) is None
    assert await outbox.apply_status(_status(StatusValue.READ, "wamid.Y", "not-ours")) is None
    assert recorded.value("whatsray_outbox_events_total", event="status_unknown") == 2
    assert recorded.value("whatsray_statuses_total", status="read") == 2
    record = await ledger.get_outbound("t1:0")
    assert record is not None and (record.status, record.wamid) == ("pending", None)


async def test_a_failed_status_wins_and_dead_letters_once(offline_graph: GraphClient) -> None:
    ledger = InMemoryLedger()
    await ledger.record_outbound(_item())
    await ledger.mark_sent("t1:0", "wamid.A")
    outbox = Outbox(PNID, offline_graph, ledger)
    failed = _status(StatusValue.FAILED, errors=(WebhookError(code=131026, title="Undeliverable"),))

    await outbox.apply_status(_status(StatusValue.DELIVERED))
    assert await outbox.apply_status(failed) == "dead"
    assert await outbox.apply_status(failed) == "dead"
    assert await outbox.apply_status(_status(StatusValue.READ)) == "dead"

    [letter] = ledger.dead_letters.values()
    assert (letter.reason, letter.error_code) == ("failed_status:131026", 131026)
    assert letter.details is not None and "131026" in letter.details
