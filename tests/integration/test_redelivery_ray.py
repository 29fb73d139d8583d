"""Redelivered webhooks and a killed SessionHost, together, on real Ray with the whole app.

40 chats write 4-6 messages each, all chats at once. Every webhook reaches the app three times:
twice from the emulator (`duplicates=1`) and once more straight to `/webhook`, late (after the
chat's next message). While that load is in flight both session hosts are killed, one after
the other (`ray.kill(..., no_restart=False)`): Ray restarts each, and it re-reads its pending
entries. Once the platform is quiet (`tests/support/quiet.py`: nothing left in the inbox, the
outbox or the emulator), every message has exactly one turn (the `enqueue` echo agent: one
message, one turn, one reply), no turn holds an input twice or shares one with another turn,
every chat got its answers exactly once and in order, and no entry is left pending.

Guarantees 1, 2, 3 and 6 of docs/architecture.md, section 1, under load at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.echo_agents import write_echo_agents
from tests.support.quiet import wait_quiet
from tests.support.ray_serve import RunningWhatsray, running_whatsray
from whatsray.inbox import partition_for
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID
from whatsray.whatsapp.emulator.webhook_payloads import encode_webhook_body
from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign

PARTITIONS = 2
CHATS = 40
COPIES = 3  # every webhook reaches the app this many times


def user_of(chat: int) -> str:
    return f"1555300{chat:04d}"


def texts_of(chat: int) -> list[str]:
    return [f"c{chat}-m{n}" for n in range(4 + chat % 3)]  # 4, 5 or 6 messages


def chat_key(chat: int) -> str:
    return f"{DEFAULT_PHONE_NUMBER_ID}:{user_of(chat)}"


@dataclass
class Load:
    """What the senders did: each chat's wamids in the order they were sent."""

    app: RunningWhatsray
    wamids: dict[int, list[str]] = field(default_factory=dict)
    sent: int = 0  # messages whose emulator delivery answered
    lock: threading.Lock = field(default_factory=threading.Lock)

    def redeliver(self, payload: dict[str, Any]) -> None:
        """The same webhook once more, as Meta would deliver it again: signed, to /webhook."""
        body = encode_webhook_body(payload)
        secret = self.app.settings.app_secret
        assert secret is not None
        headers = {SIGNATURE_HEADER: sign(secret.get_secret_value(), body)}
        answer = self.app.api.post("/webhook", content=body, headers=headers)
        assert answer.status_code == 200, answer.text

    def send_chat(self, chat: int) -> None:
        """One chat's messages in order (each delivered twice by the emulator), each message's
        third copy only after the next message: a late, out-of-order redelivery."""
        rng = random.Random(chat)
        late: dict[str, Any] | None = None
        wamids = []
        for text in texts_of(chat):
            time.sleep(rng.uniform(0, 0.05))  # chats interleave differently on every round
            body = {
                "from": user_of(chat),
                "message": {"type": "text", "text": text},
                "duplicates": COPIES - 2,
            }
            answer = self.app.emulator.post("/emulator/inbound", json=body)
            assert answer.status_code == 200, answer.text
            reply = answer.json()
            assert reply["copies"] == COPIES - 1
            wamids.append(reply["wamid"])
            with self.lock:
                self.sent += 1
            if late is not None:
                self.redeliver(late)
            late = reply["payload"]
        assert late is not None
        self.redeliver(late)
        self.wamids[chat] = wamids


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWhatsray]:
    data = tmp_path_factory.mktemp("redelivery")
    # The benchmarks' configuration: a scripted echo agent, one turn per message (no coalescing).
    agents = write_echo_agents(Path(data) / "agents.yaml", "enqueue")
    with running_whatsray(data, partitions=PARTITIONS, agents_file=agents) as running:
        yield running


def test_many_chats_each_webhook_three_times_and_hosts_killed_mid_load(
    app: RunningWhatsray,
) -> None:
    import ray

    import serve_app

    chats = range(CHATS)
    partitions = {
        partition_for(ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=user_of(c)), PARTITIONS)
        for c in chats
    }
    assert partitions == set(range(PARTITIONS))  # both hosts have chats to lose
    total = sum(len(texts_of(c)) for c in chats)
    load = Load(app)
    with ThreadPoolExecutor(max_workers=CHATS) as pool:
        senders = [pool.submit(load.send_chat, c) for c in chats]
        # Kill each host once a share of the load is in, while the rest is still coming.
        for partition, share in ((0, 0.3), (1, 0.6)):
            deadline = time.monotonic() + 60
            while load.sent < share * total:
                assert time.monotonic() < deadline, f"the load stalled at {load.sent}/{total}"
                assert not any(s.done() and s.exception() for s in senders)
                time.sleep(0.02)
            host = serve_app.find_actor(serve_app.session_host_name(partition))
            ray.kill(host, no_restart=False)
        for sender in senders:
            sender.result()
    assert load.sent == total

    # Everything that was going to happen has happened: a second reply, a second turn or a
    # lost entry is visible now, and no entry is left pending in the inbox.
    activity = wait_quiet(app.settings, app.emulator, within_s=120)
    assert not any(activity.unacked.values()) and not any(activity.undelivered.values())

    store = serve_app.find_actor(serve_app.STORE_NAME)
    # Replies recorded in the ledger and never sent (a lost reply shows here, with its turn).
    stuck = ray.get(store.pending_outbound.remote(DEFAULT_PHONE_NUMBER_ID, 10_000))
    problems = [f"never sent: {r.outbound_id} {r.body.get('text')}" for r in stuck]
    for chat in chats:
        problems += check_chat(
            chat,
            load.wamids[chat],
            app,
            ray.get(store.list_turns.remote(chat_key(chat))),
            ray.get(store.count_messages.remote(chat_key(chat), direction="in")),
        )
    assert not problems, "\n".join(problems)


def check_chat(
    chat: int, wamids: list[str], app: RunningWhatsray, turns: list[Any], stored: int
) -> list[str]:
    """What is wrong with one chat's replies (in the emulator) and turns (in the store)."""
    problems = []
    expected = [f"echo: {text}" for text in texts_of(chat)]
    records = app.emulator.get("/emulator/outbound", params={"to": user_of(chat)}).json()
    replies = [r["body"]["text"]["body"] for r in records if r["outcome"] == "accepted"]
    for reply in replies:
        lines = reply.removeprefix("echo: ").split("\n")
        if len(lines) != len(set(lines)):
            problems.append(f"chat {chat}: a reply repeats an input: {reply!r}")
    if replies != expected or len(records) != len(expected):
        outcomes = [r["outcome"] for r in records]
        problems.append(f"chat {chat}: replies {replies} ({outcomes}), expected {expected}")

    name = {wamid: f"m{n}" for n, wamid in enumerate(wamids)}  # readable inputs
    for turn in turns:
        if len(turn.input_ids) != len(set(turn.input_ids)):
            problems.append(f"chat {chat}: turn {turn.turn_id} repeats an input: {turn.input_ids}")
    counted = Counter(i for turn in turns for i in turn.input_ids)
    twice = [name.get(i, i) for i, n in counted.items() if n > 1]
    if twice:
        problems.append(f"chat {chat}: inputs in more than one turn: {twice}")
    # One turn per message (enqueue). Not in order: a turn's `started_at` is its input's
    # timestamp, in whole seconds, so turns of one second list in turn id order.
    inputs = sorted(tuple(name.get(i, i) for i in turn.input_ids) for turn in turns)
    if inputs != sorted((name[w],) for w in wamids):
        ids = [(t.turn_id, [name.get(i, i) for i in t.input_ids], t.outcome) for t in turns]
        problems.append(f"chat {chat}: turns {ids}, expected one per message m0..")
    if any(turn.outcome != "ok" for turn in turns):
        problems.append(f"chat {chat}: outcomes {[t.outcome for t in turns]}")
    if stored != len(expected):
        problems.append(f"chat {chat}: {stored} inbound messages stored, not {len(expected)}")
    return problems
