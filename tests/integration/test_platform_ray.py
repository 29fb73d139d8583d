"""The platform on real Ray: Serve ingress, session hosts, store, outbox, router and agent actors,
the emulator as WhatsApp, a real Valkey. Each test would fail if its guarantee
(docs/architecture.md, section 1) broke. One Ray cluster and one deployed app serve the whole
module; tests use distinct users.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.quiet import wait_quiet
from tests.support.ray_serve import running_whatsray
from whatsray.inbox import EmbeddedValkey, partition_for
from whatsray.settings import Settings
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID
from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign

AGENTS = Path(__file__).resolve().parents[1] / "data" / "agents.yaml"
PARTITIONS = 2
OPERATOR = "15550009999"  # WHATSRAY_OPERATOR_NUMBER: told when a chat is handed to a person
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "message_text.json"


@dataclass
class Platform:
    settings: Settings
    api: httpx.Client  # the webhook ingress (Serve)
    emulator: httpx.Client  # WhatsApp
    valkey: EmbeddedValkey

    def user_says(self, user: str, text: str, **extra: Any) -> httpx.Response:
        body = {"from": user, "message": {"type": "text", "text": text}, **extra}
        return self.emulator.post("/emulator/inbound", json=body)

    def sent_to(self, user: str) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.emulator.get(
            "/emulator/outbound", params={"to": user}
        ).json()
        return records

    def texts_to(self, user: str, count: int, within_s: float = 30.0) -> list[str]:
        """Wait until `user` got `count` messages (or time runs out); their texts, in order."""
        deadline = time.monotonic() + within_s
        while True:
            texts = [
                r["body"]["text"]["body"] for r in self.sent_to(user) if r["outcome"] == "accepted"
            ]
            if len(texts) >= count or time.monotonic() > deadline:
                return texts
            time.sleep(0.1)

    def wait_quiet(self, within_s: float = 120.0) -> None:
        """Until nothing is left to deliver, send or retry (`tests/support/quiet.py`): what
        was going to arrive has arrived, so what is absent now stays absent."""
        wait_quiet(self.settings, self.emulator, within_s=within_s)

    def session_host(self, user: str) -> Any:
        import serve_app

        chat = ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=user)
        return actor(serve_app.session_host_name(partition_for(chat, PARTITIONS)))


def actor(name: str) -> Any:
    """A platform actor by the name the composition root (serve_app.py) gave it."""

    import serve_app

    return serve_app.find_actor(name)


def outbox() -> Any:
    import serve_app

    return actor(serve_app.outbox_name(DEFAULT_PHONE_NUMBER_ID))


def store() -> Any:
    import serve_app

    return actor(serve_app.STORE_NAME)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_whatsray(
        tmp_path_factory.mktemp("platform"),
        partitions=PARTITIONS,
        agents_file=AGENTS,
        operator_number=OPERATOR,
    ) as running:
        platform = Platform(running.settings, running.api, running.emulator, running.valkey)
        yield platform
        # Every test settles: then no inbound message is left without an outcome.
        platform.wait_quiet()
        unresolved = platform.api.get(
            "/api/inbound/unresolved", params={"older_than_s": 0}, headers=admin(platform)
        ).json()
        assert unresolved["count"] == 0, unresolved


def test_end_to_end_reply(platform: Platform) -> None:
    assert platform.user_says("15550000001", "hello ray").status_code == 200
    assert platform.texts_to("15550000001", 1) == ["echo: hello ray"]
    ready = platform.api.get("/ready").json()
    assert ready["ready"] is True
    assert ready["emulator_url"] == str(platform.emulator.base_url).rstrip("/")


def test_same_webhook_five_times_gives_one_reply(platform: Platform) -> None:
    assert platform.user_says("15550000002", "once please", duplicates=5).status_code == 200
    assert platform.texts_to("15550000002", 1) == ["echo: once please"]
    platform.wait_quiet()  # a second turn would have answered by now
    assert len(platform.sent_to("15550000002")) == 1


def test_three_quick_messages_give_one_coalesced_turn(platform: Platform) -> None:
    for text in ("one", "two", "three"):
        platform.user_says("15550000003", text)
    assert platform.texts_to("15550000003", 1) == ["echo: one\ntwo\nthree"]
    platform.wait_quiet()  # a turn for a late part would have answered by now
    assert len(platform.sent_to("15550000003")) == 1


def test_many_chats_interleaved_each_in_order_none_missing(platform: Platform) -> None:
    users = [f"1555100{i:04d}" for i in range(100)]
    sends = [(user, f"m{n}") for n in range(10) for user in users]  # interleaved rounds
    with ThreadPoolExecutor(max_workers=16) as pool:
        # Concurrent across chats, in order within one: each worker sends one user's messages.
        def send_all(user: str) -> None:
            for u, text in sends:
                if u == user:
                    assert platform.user_says(u, text).status_code == 200

        list(pool.map(send_all, users))
    # Every turn answered and every status applied (the next tests start from a quiet platform):
    # a message answered twice would show here too.
    platform.wait_quiet(within_s=300)
    for user in users:
        replies = "\n".join(platform.texts_to(user, 0, within_s=0)).replace("echo: ", "")
        assert re.findall(r"m\d", replies) == [f"m{n}" for n in range(10)], user


def test_webhook_answers_503_while_the_inbox_is_down_and_nothing_is_lost(
    platform: Platform,
) -> None:
    body = FIXTURE.read_bytes()  # a real message: the POST has something to store
    headers = {SIGNATURE_HEADER: sign(platform_secret(platform), body)}
    platform.valkey.stop()
    try:
        assert platform.api.post("/webhook", content=body, headers=headers).status_code == 503
        # The emulator (like Meta) gets a 503 for a real message and keeps retrying it.
        response = platform.user_says("15550000004", "while down")
        assert response.status_code == 502, response.text
    finally:
        platform.valkey.start()
    assert platform.api.post("/webhook", content=body, headers=headers).status_code == 200
    assert platform.texts_to("15550000004", 1, within_s=90) == ["echo: while down"]


def test_session_host_killed_mid_turn_answers_exactly_once(platform: Platform) -> None:
    import ray

    user = "15550000005"
    platform.user_says(user, "/slow survive a crash")  # the slow agent takes 3 s
    time.sleep(1.5)  # the turn is inside the model call now
    ray.kill(platform.session_host(user), no_restart=False)
    assert platform.texts_to(user, 1, within_s=60) == ["echo: survive a crash"]
    # The restarted host re-reads the turn's entry (never acked) and runs it again: once it is
    # committed and acked, and the outbox idle, a second reply would be in the emulator.
    platform.wait_quiet()
    assert len(platform.sent_to(user)) == 1


def platform_secret(platform: Platform) -> str:
    secret = platform.settings.app_secret
    assert secret is not None
    return secret.get_secret_value()


def admin(platform: Platform) -> dict[str, str]:
    token = platform.settings.admin_token
    assert token is not None
    return {"Authorization": f"Bearer {token.get_secret_value()}"}


def test_outbox_killed_in_the_middle_of_a_send_sends_once(platform: Platform) -> None:
    import ray

    user = "15550000006"
    platform.user_says(user, "open the window")
    platform.texts_to(user, 1)
    # The next send is held 4 s by "Meta", then applied: the outbox dies while it waits.
    faults = {"timeout": {"seconds": 4, "count": 1, "apply": True}}
    platform.emulator.post("/emulator/faults", json=faults).raise_for_status()
    try:
        platform.user_says(user, "crash the outbox")
        deadline = time.monotonic() + 20
        while platform.emulator.get("/emulator/faults").json().get("timeout") is not None:
            assert time.monotonic() < deadline, "the held send never started"
            time.sleep(0.1)
        ray.kill(outbox(), no_restart=False)
        texts = platform.texts_to(user, 2, within_s=60)
        # The restarted outbox resumes the pending send (attempted once): it waits up to its
        # grace (10 s) for a status webhook before resending, and counts as in flight all that
        # time, so quiet comes after the grace: a resend would be here by then.
        platform.wait_quiet()
    finally:
        platform.emulator.delete("/emulator/faults")
    assert texts == ["echo: open the window", "echo: crash the outbox"]
    assert len([r for r in platform.sent_to(user) if r["outcome"] == "accepted"]) == 2


def test_throughput_and_server_errors_are_retried_then_delivered(platform: Platform) -> None:
    user = "15550000007"
    platform.user_says(user, "first")
    platform.texts_to(user, 1)
    faults = {"next_errors": {"code": 130429, "count": 1}, "error_rate": 0.0}
    platform.emulator.post("/emulator/faults", json=faults).raise_for_status()
    platform.user_says(user, "rate limited")
    assert platform.texts_to(user, 2, within_s=60)[-1] == "echo: rate limited"
    platform.emulator.post(
        "/emulator/faults", json={"next_errors": {"code": 131000, "count": 1}}
    ).raise_for_status()
    platform.user_says(user, "server error")
    assert platform.texts_to(user, 3, within_s=60)[-1] == "echo: server error"
    refused = [r["error_code"] for r in platform.sent_to(user) if r["outcome"] == "rejected"]
    assert refused == [130429, 131000]


def test_permanent_error_dead_letters_and_replay_delivers_once(platform: Platform) -> None:
    user = "15550000008"
    platform.user_says(user, "hello")
    platform.texts_to(user, 1)
    platform.emulator.post(
        "/emulator/faults", json={"recipient_errors": {f"+{user}": {"code": 131026}}}
    ).raise_for_status()
    platform.user_says(user, "undeliverable")
    deadline = time.monotonic() + 30
    while True:
        answer = platform.api.get("/api/dead-letters", headers=admin(platform))
        letters = answer.json()["dead_letters"]
        mine = [d for d in letters if d["error_code"] == 131026 and user in str(d)]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(mine) == 1
    platform.emulator.delete("/emulator/faults").raise_for_status()
    path = f"/api/dead-letters/{mine[0]['dead_letter_id']}/replay"
    for _ in range(2):  # replaying twice sends once
        assert platform.api.post(path, headers=admin(platform)).status_code == 202
    assert platform.texts_to(user, 2)[-1] == "echo: undeliverable"
    platform.wait_quiet()  # a second replay's send would be here by now
    assert [
        r["body"]["text"]["body"] for r in platform.sent_to(user) if r["outcome"] == "accepted"
    ] == [
        "echo: hello",
        "echo: undeliverable",
    ]


def test_admin_api_auth_send_and_read(platform: Platform) -> None:
    assert platform.api.get("/api/chats").status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert platform.api.get("/api/chats", headers=wrong).status_code == 403
    user = "15550000009"
    platform.user_says(user, "hi admin")
    platform.texts_to(user, 1)
    body = {"to": f"+{user}", "text": "a human says hi", "idempotency_key": "k1"}
    for _ in range(2):
        sent = platform.api.post("/api/send-message", json=body, headers=admin(platform))
        assert sent.status_code == 202, sent.text
    assert platform.texts_to(user, 2)[-1] == "a human says hi"
    chat = f"{DEFAULT_PHONE_NUMBER_ID}:{user}"
    messages = platform.api.get(f"/api/messages/{chat}", headers=admin(platform)).json()
    assert [m["direction"] for m in messages["messages"]][:3] == ["in", "out", "out"]
    bad = platform.api.post("/api/send-message", json={"to": user}, headers=admin(platform))
    assert bad.status_code == 422 and "text" in bad.text
    assert "/api/send-message" in platform.api.get("/openapi.json").json()["paths"]


def test_an_agent_uses_tools_in_a_real_turn_and_hands_the_chat_to_a_person(
    platform: Platform,
) -> None:
    import ray

    # The operator wrote to the business number today: their 24 h window is open. The operator's
    # chat never gets a bot turn: the handoff desk answers that nothing is handed off yet.
    platform.user_says(OPERATOR, "operator on duty")
    desk = "No chat is handed off to you on this number: nothing was sent."
    assert platform.texts_to(OPERATOR, 1) == [desk]
    user = "15550000010"
    platform.user_says(user, "hi there")
    assert platform.texts_to(user, 1) == ["echo: hi there"]

    platform.user_says(user, "/support my new bike broke")
    # The tool's message, then the reply: each exactly once, in that order.
    expected = [
        "echo: hi there",
        "Sorry to hear that. Let me get a person.",
        "A person from our team will take over here soon.",
    ]
    assert platform.texts_to(user, 3) == expected
    notice = f"Chat {user} needs a person: bike broke after purchase"
    assert platform.texts_to(OPERATOR, 2) == [desk, notice]

    # The turn's tool calls are stored with it, each with its result.
    chat = f"{DEFAULT_PHONE_NUMBER_ID}:{user}"
    turns = ray.get(store().list_turns.remote(chat))
    assert sorted(t.outcome for t in turns) == ["handoff", "ok"]  # same second: any order
    [handoff] = [t for t in turns if t.outcome == "handoff"]
    assert handoff.agent == "support"
    calls = ray.get(store().list_tool_calls.remote(handoff.turn_id))
    assert [(c.name, c.status) for c in calls] == [
        ("get_messages", "ok"),
        ("send_message", "ok"),
        ("handoff_to_human", "ok"),
    ]
    history = json.loads(calls[0].result)["messages"]
    assert [m["text"] for m in history] == ["hi there", "echo: hi there"]

    # Handed off: the next message is stored, and the bot stays silent.
    platform.user_says(user, "hello? anyone?")
    platform.wait_quiet()  # stored (its entry acked), and a bot reply would have arrived by now
    assert ray.get(store().count_messages.remote(chat, direction="in")) == 3
    assert platform.texts_to(user, 3, within_s=0) == expected
    assert len(platform.sent_to(user)) == 3
    record = ray.get(store().get_chat.remote(chat))
    assert record.handoff is True and record.agent == "support"
    # ...and forwarded to the operator, whose answer goes back to the user.
    forwarded = platform.texts_to(OPERATOR, 3)
    assert len(forwarded) == 3 and forwarded[2].endswith(": hello? anyone?"), forwarded
    platform.user_says(OPERATOR, "Hi, this is Sam from the workshop.")
    assert platform.texts_to(user, 4)[3] == "Hi, this is Sam from the workshop."


def test_a_turn_cancelled_in_a_tool_call_streams_its_journal_and_stops_the_worker(
    platform: Platform,
) -> None:
    """The Ray edge of the journal: a worker's tool calls reach the session's journal while the
    turn runs, and cancelling the turn (an interrupt) cancels it in the worker."""
    import asyncio

    import ray

    from actors.agents import AgentWorker
    from actors.clients import AgentPool
    from whatsray.agents import AgentTurnRequest
    from whatsray.session.turns import ToolCallJournal, ToolCallStatus

    @ray.remote(num_cpus=0)
    class StuckOutbox:  # sending never returns: the turn is caught inside send_message
        async def dispatch(self, items: Any, fresh: Any = None) -> None:
            await asyncio.Event().wait()

    worker = (
        ray.remote(AgentWorker)
        .options(num_cpus=0, max_concurrency=100)
        .remote(
            str(AGENTS),
            "support",
            store=store(),
            outboxes={DEFAULT_PHONE_NUMBER_ID: StuckOutbox.remote()},  # type: ignore[attr-defined]
        )
    )
    pool = AgentPool({"support": [worker]})
    chat = f"{DEFAULT_PHONE_NUMBER_ID}:15550000011"

    async def scenario() -> ToolCallJournal:
        journal = ToolCallJournal()
        request = AgentTurnRequest("ray-turn-1", chat, ("my bike broke",))
        turn = asyncio.create_task(pool.run("support", request, journal))
        deadline = time.monotonic() + 60
        while [c.name for c in journal.calls] != ["get_messages", "send_message"]:
            assert time.monotonic() < deadline and not turn.done(), journal.calls
            await asyncio.sleep(0.05)
        turn.cancel()
        with pytest.raises(asyncio.CancelledError):
            await turn
        return journal

    journal = asyncio.run(scenario())
    done, running = journal.calls
    assert done.status is ToolCallStatus.OK and json.loads(done.result or "")["messages"] == []
    assert running.status is ToolCallStatus.RUNNING  # started in the worker, never finished
    assert [c.status for c in journal.cancel_unfinished()][-1] is ToolCallStatus.CANCELLED
    ray.kill(worker)


def test_a_queued_turn_hears_one_moment_and_the_load_shows_in_the_admin_api(
    platform: Platform,
) -> None:
    """The `queued` agent runs one turn at a time (3 s each): of two chats writing at once, one
    waits. While it does, inference is saturated, so each unanswered user hears the notice at
    most once (the waiting one for sure); both get their answers; /api/inference counts it."""
    users = ["15550000401", "15550000402"]
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(lambda u: platform.user_says(u, f"/queued hello {u}"), users))
    answers = {u: f"echo: hello {u}" for u in users}
    # Both turns answered (each entry is acked only once its turn is committed), and a second
    # notice, which must not come, would be here by now.
    platform.wait_quiet()
    texts = {}
    for user in users:
        texts[user] = platform.texts_to(user, 0, within_s=0)
        assert texts[user][-1] == answers[user], texts
        assert texts[user][:-1] in ([], ["One moment please!"]), texts
    assert any(texts[u] == ["One moment please!", answers[u]] for u in users), texts
    report = platform.api.get("/api/inference", headers=admin(platform))
    assert report.status_code == 200, report.text
    body = report.json()
    queued = next(a for a in body["agents"] if a["agent"] == "queued")
    assert (queued["capacity"], queued["admitted"], queued["waited"]) == (1, 2, 1)
    assert not queued["saturated"] and queued["running"] == 0
    assert body["notices_sent"] >= 1
    assert {a["agent"] for a in body["agents"]} == {"assistant", "slow", "support", "queued"}
    assert platform.api.get("/api/inference").status_code == 401


def test_whatsray_status_shows_every_partition_and_the_outbox(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    from whatsray.cli import main

    user = "15550000501"
    platform.user_says(user, "how are things")
    assert platform.texts_to(user, 1) == ["echo: how are things"]
    platform.wait_quiet()  # everything sent: the outbox's queue is empty again
    url = str(platform.api.base_url).rstrip("/")
    token = admin(platform)["Authorization"].removeprefix("Bearer ")

    assert main(["status", "--url", url, "--token", token]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("Partitions") + 2  # past the column headers
    rows = [re.fullmatch(r"\s*(\d+)\s+(\d+)\s+(\d+)\s+\S+", line) for line in lines[start:]]
    partitions = [int(row.group(1)) for row in rows[:PARTITIONS] if row is not None]
    assert partitions == list(range(PARTITIONS)), lines
    outbox = [line.split() for line in lines if line.strip().startswith(DEFAULT_PHONE_NUMBER_ID)]
    assert [row[:2] for row in outbox] == [[DEFAULT_PHONE_NUMBER_ID, "0"]], lines  # queue depth
    assert not any(line.startswith("Unavailable") for line in lines), lines

    assert main(["status", "--url", url, "--token", token, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["unavailable"] == []
    assert all(p["sessions_active"] is not None for p in body["partitions"]), body
    assert {a["agent"] for a in body["agents"]} == {"assistant", "slow", "support", "queued"}
    assert isinstance(body["dead_letters"], int) and isinstance(body["handoffs"], int)
    assert body["next_runs"] is not None


def signed_webhook(platform: Platform, *, sender: str, wamid: str, number: str) -> httpx.Response:
    """A real message webhook (the fixture's) from `sender` to business number `number`."""
    payload = json.loads(FIXTURE.read_text())
    value = payload["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = number
    value["contacts"] = [
        {"profile": {"name": "Test"}, "wa_id": sender}
    ]  # no BSUID: keyed by `from`
    message = value["messages"][0]
    message.pop("from_user_id", None)
    message.update({"from": sender, "id": wamid, "timestamp": str(int(time.time()))})
    body = json.dumps(payload).encode()
    headers = {SIGNATURE_HEADER: sign(platform_secret(platform), body)}
    return platform.api.post("/webhook", content=body, headers=headers)


def quarantined(platform: Platform) -> list[dict[str, Any]]:
    page = platform.api.get("/api/quarantine", headers=admin(platform)).json()
    items: list[dict[str, Any]] = page["quarantined"]
    return items


def test_a_reply_that_fails_validation_is_quarantined_and_the_chat_is_not_wedged(
    platform: Platform,
) -> None:
    # A `from` that is neither a phone number nor a BSUID: its reply cannot be addressed, so
    # committing the turn fails validation (Meta's 100), a permanent error. Before, it was
    # retried every few seconds forever and held the chat.
    bad = "not-a-phone"

    def records_of_bad_chat() -> list[dict[str, Any]]:
        return [q for q in quarantined(platform) if q["chat"] and bad in q["chat"]]

    for n in (1, 2):  # the second after the first is quarantined: a turn of its own
        wamid = f"wamid.BADFROM{n}"
        response = signed_webhook(platform, sender=bad, wamid=wamid, number=DEFAULT_PHONE_NUMBER_ID)
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 60
        while len(records_of_bad_chat()) < n and time.monotonic() < deadline:
            time.sleep(0.2)
    platform.user_says("15550000041", "after the bad one")
    assert platform.texts_to("15550000041", 1) == ["echo: after the bad one"]
    platform.wait_quiet()
    records = records_of_bad_chat()
    assert sorted(tuple(q["event_ids"]) for q in records) == [
        ("wamid.BADFROM1",),
        ("wamid.BADFROM2",),
    ]  # the chat's second message was taken up too: the first did not hold it
    assert {(q["stage"], q["reason"]) for q in records} == {("commit_turn", "permanent")}
    assert all("MessageValidationError" in q["error"] for q in records)


def test_an_event_for_a_number_the_app_does_not_serve_is_stored_and_the_rest_runs(
    platform: Platform,
) -> None:
    other = "999000111222333"  # a second number added to the same Meta app
    response = signed_webhook(platform, sender="15550000042", wamid="wamid.OTHER1", number=other)
    assert response.status_code == 200, response.text
    platform.user_says("15550000043", "still served")
    assert platform.texts_to("15550000043", 1) == ["echo: still served"]
    platform.wait_quiet()
    [record] = [q for q in quarantined(platform) if q["event_ids"] == ["wamid.OTHER1"]]
    assert (record["stage"], record["reason"]) == ("delivery", "not_served")
    assert platform.sent_to("15550000042") == []
