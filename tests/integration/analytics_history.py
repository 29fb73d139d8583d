"""A scripted history whose analytics are known, written through the Store's own write methods
with a fake clock (tests/integration/test_analytics.py, test_analytics_page.py).

Days are UTC days from T0 (2025-06-16 00:00 UTC). Business number PNID (and OTHER for one chat):

- A (1001), day 0: three messages, each answered by the faq agent (2, 4, 10 s; the second with
  its "I don't know"). Contained; its window closes answered.
- B (1002), day 0 12:00: the sales agent hands off (reply after 6 s); the operator's reply is
  relayed at 12:30 (1800 s); B writes again at 13:00 and nobody answers: its window closes
  unanswered on day 1. The operator's chat (9999) gets a forward and writes: not a user's.
- C (1003), day 1: faq "I don't know" (3 s; that reply is dead-lettered `rejected`), then the
  support agent subscribes C to greetings (5 s); a reminder goes out as a template.
- E (1005), day 2: writes at 14:00, the business answers from its app at 15:00 (an echo: the
  handoff and the human reply at once, 0 s). Still open at NOW.
- D (2001) on OTHER, day 0: one faq answer (1 s).
"""

from __future__ import annotations

from datetime import UTC, datetime

from whatsray.outbox.ledger import OutboundItem
from whatsray.store import Store
from whatsray.store.records import ToolCallRecord, TurnRecord
from whatsray.whatsapp.events import ChatKey, MessageEvent
from whatsray.whatsapp.message_content import MessageType, TextContent

PNID = "106540352242922"
OTHER = "222000111"
OPERATOR = "9999"
T0 = 1_750_032_000.0  # 2025-06-16 00:00 UTC
DAY = 86400.0
H = 3600.0
NOW = T0 + 3 * DAY + 12 * H
RANGE = (T0, T0 + 3 * DAY)

# What the summary of RANGE on PNID must say.
EXPECTED = {
    "conversations": 4,
    "conversations_closed": 3,
    "handed_off": 2,
    "contained": 2,
    "containment_rate": round(2 / 3, 6),
    "handoff_rate": 0.5,
    "human_reply_median_s": 900.0,  # B: 1800 s, E: 0 s (the echo is both)
    "inbound": 8,
    "outbound": 9,
    "turns": 6,
    "faq_turns": 4,
    "faq_unknown": 2,
    "faq_unknown_rate": 0.5,
    "replied_turns": 6,
    "first_reply_median_s": 4.5,
    "first_reply_p90_s": 8.0,
    "dead_letters": 1,
    "template_fallbacks": 1,
    "windows_unanswered": 1,
    "opt_ins": 1,
    "opt_outs": 0,
    "opted_in_now": 1,
    "dead_letters_by_reason": {"rejected": 1},
    "template_fallbacks_by_purpose": {"reminder": 1},
    "turns_by_agent": [
        {"agent": "faq", "turns": 4, "faq_unknown": 2, "handoffs": 0},
        {"agent": "sales", "turns": 1, "faq_unknown": 0, "handoffs": 1},
        {"agent": "support", "turns": 1, "faq_unknown": 0, "handoffs": 0},
    ],
}
# Per day (day 0, 1, 2) on PNID.
EXPECTED_DAYS = {
    "conversations": [2, 1, 1],
    "inbound": [5, 2, 1],
    "outbound": [5, 3, 1],
    "turns": [4, 2, 0],
    "windows_unanswered": [0, 1, 0],
    "dead_letters": [0, 1, 0],
    "template_fallbacks": [0, 1, 0],
    "handed_off": [1, 0, 1],
}


def key(user: str, number: str = PNID) -> ChatKey:
    return ChatKey(phone_number_id=number, user=user)


def event(wamid: str, user: str, at: float, number: str = PNID, text: str = "hi") -> MessageEvent:
    return MessageEvent(
        idempotency_key=f"message:{wamid}",
        chat=key(user, number),
        phone_number_id=number,
        message_id=wamid,
        type=MessageType.TEXT,
        content=TextContent(body=text),
        from_phone=user,
        timestamp=datetime.fromtimestamp(at, UTC),
        raw={"id": wamid, "from": user, "type": "text", "text": {"body": text}},
    )


def reply(
    outbound_id: str,
    user: str,
    at: float,
    *,
    number: str = PNID,
    turn_id: str | None = None,
    purpose: str | None = None,
    text: str = "hello",
) -> OutboundItem:
    return OutboundItem(
        outbound_id=outbound_id,
        chat=str(key(user, number)),
        phone_number_id=number,
        to=user,
        body={"messaging_product": "whatsapp", "to": user, "type": "text", "text": {"body": text}},
        turn_id=turn_id,
        created_at=at,
        purpose=purpose,
    )


async def turn(
    store: Store,
    turn_id: str,
    user: str,
    wamid: str,
    at: float,
    delay_s: float,
    *,
    agent: str = "faq",
    number: str = PNID,
    outcome: str = "ok",
    agent_outcome: str | None = "ok",
    calls: tuple[ToolCallRecord, ...] = (),
) -> str:
    """A user message at `at` answered by one turn `delay_s` later; the reply's id."""
    out = reply(f"{turn_id}:0", user, at + delay_s, number=number, turn_id=turn_id)
    record = TurnRecord(
        chat=str(key(user, number)),
        turn_id=turn_id,
        agent=agent,
        input_ids=(wamid,),
        reply_ids=(out.outbound_id,),
        outcome=outcome,
        started_at=at,
        finished_at=at + delay_s,
        agent_outcome=agent_outcome,
    )
    await store.record_turn_results(
        record, [out], inputs=[event(wamid, user, at, number)], tool_calls=calls
    )
    return out.outbound_id


async def write_history(store: Store, clock: list[float]) -> None:
    """`clock[0]` is the store's fake clock: set before the writes whose time it gives."""
    await turn(store, "tA1", "1001", "a1", T0 + 10 * H, 2)
    await turn(store, "tA2", "1001", "a2", T0 + 10 * H + 300, 4, agent_outcome="no_knowledge")
    await turn(store, "tA3", "1001", "a3", T0 + 10 * H + 600, 10)

    await turn(store, "tB1", "1002", "b1", T0 + 12 * H, 6, agent="sales", outcome="handoff")
    forward = reply("handoff:x:fwd:b1", OPERATOR, T0 + 12 * H + 7, purpose="handoff_notice")
    await store.record_outbound(forward)
    await store.record_inbound(event("o1", OPERATOR, T0 + 12 * H + 1700))
    await store.record_outbound(reply(f"handoff:{key('1002')}:relay:o1", "1002", T0 + 12.5 * H))
    await store.record_inbound(event("b2", "1002", T0 + 13 * H), outcome="handed_off")

    d1 = T0 + DAY
    dead = await turn(store, "tC1", "1003", "c1", d1 + 9 * H, 3, agent_outcome="no_knowledge")
    clock[0] = d1 + 9 * H + 30
    await store.add_dead_letter(dead, "rejected", 131026, "undeliverable")
    subscribe = ToolCallRecord(
        turn_id="tC2",
        idx=0,
        call_id="call-1",
        name="subscribe_greetings",
        arguments="{}",
        result='{"subscribed": true}',
        status="ok",
    )
    await turn(store, "tC2", "1003", "c2", d1 + 9 * H + 60, 5, agent="support", calls=(subscribe,))
    await store.set_opt_in(key("1003"), True)
    await store.record_outbound(reply("rem1:template", "1003", d1 + 10 * H, purpose="reminder"))

    d2 = T0 + 2 * DAY
    await store.record_inbound(event("e1", "1005", d2 + 14 * H))
    await store.record_echo(
        key("1005"), "echo-1", type_="text", text="we are on it", raw={}, at=d2 + 15 * H
    )

    await turn(store, "tD1", "2001", "d1", T0 + 8 * H, 1, number=OTHER)
    clock[0] = NOW
