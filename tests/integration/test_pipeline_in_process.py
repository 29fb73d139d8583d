"""The whole turn pipeline in one process, no Ray: emulator -> signed webhook -> inbox (real Valkey)
-> partition consumer -> session -> router -> agent (scripted) -> store (real DuckDB) -> outbox ->
emulator. What the Ray actors run, minus the actors (built by whatsray/in_process.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.support.metrics import MetricsProbe
from tests.support.quiet import until_calm
from whatsray.agents import parse_agents_config
from whatsray.agents.build import EngineFactory
from whatsray.agents.config import AgentsConfig
from whatsray.in_process import TOKEN, wired_platform
from whatsray.inbox import Inbox, partition_for
from whatsray.llm import ChatMessage, ScriptedEngine, build_engine
from whatsray.outbox import Outbox
from whatsray.pipeline.consumer import consumer_name
from whatsray.pipeline.host import SessionHostCore
from whatsray.store import Store
from whatsray.tools import BUILTIN_TOOLS, Tool, ToolArguments, ToolRegistry
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID, StatusDelays
from whatsray.whatsapp.emulator.core import Emulator
from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.graph_client import GraphClient

PARTITIONS = 2


def agents_config(policy: str = "enqueue") -> AgentsConfig:
    return parse_agents_config(
        {
            "engines": {"scripted": {"engine": "scripted", "mode": "echo"}},
            "router": {"default_agent": "assistant", "classifier": False},
            "agents": [
                {
                    "name": "assistant",
                    "description": "general assistant",
                    "system_prompt": "Be brief.",
                    "engine": "scripted",
                    "double_texting": {"policy": policy, "quiet_period_s": 0.2, "max_wait_s": 2},
                }
            ],
        }
    )


@dataclass
class Pipeline:
    emulator: Emulator
    control: httpx.AsyncClient
    store: Store
    inbox: Inbox
    engine: ScriptedEngine
    hosts: list[SessionHostCore]
    make_host: Callable[[int], SessionHostCore]
    outbox: Outbox
    busy: Callable[[], Awaitable[list[int]]]  # the platform's: all zero when quiet

    async def restart_host(self, partition: int) -> None:
        """What Ray does to a killed SessionHost: a new one, built from scratch, same partition."""
        await self.hosts[partition].close()
        self.hosts[partition] = self.make_host(partition)
        await self.hosts[partition].start()

    async def user_says(self, user: str, text: str, **extra: Any) -> str:
        body = {"from": user, "message": {"type": "text", "text": text}, **extra}
        response = await self.control.post("/emulator/inbound", json=body)
        assert response.status_code == 200, response.text
        wamid: str = response.json()["wamid"]
        return wamid

    async def quiet(self, within_s: float = 30.0) -> None:
        """Until nothing is left to do anywhere (inbox, hosts, outbox, the emulator's webhooks),
        twice in a row: then an absence ("no second reply") is proven, not hoped for."""
        await until_calm(self.busy, lambda counts: not any(counts), within_s=within_s)

    async def replies_to(self, user: str, count: int, within_s: float = 15.0) -> list[str]:
        """Wait until the emulator got `count` messages for `user`; return their texts."""
        deadline = time.monotonic() + within_s
        while True:
            sent = [r.body["text"]["body"] for r in self.emulator.outbound(to=user)]
            if len(sent) >= count or time.monotonic() > deadline:
                return sent
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_pipeline(
    redis: aioredis.Redis,
    db: Path,
    config: AgentsConfig,
    *,
    engine_factory: EngineFactory = build_engine,
    tools: ToolRegistry = BUILTIN_TOOLS,
) -> AsyncIterator[Pipeline]:
    async with wired_platform(
        config,
        Inbox(redis, partitions=PARTITIONS),
        db,
        status_delays=StatusDelays(),  # all of them: `sent`, `delivered`, `read`
        engine_factory=engine_factory,
        tools=tools,
    ) as platform:
        engine = platform.runtime.engines[0]  # the agents' engine (a fallback comes after it)
        assert isinstance(engine, ScriptedEngine)
        yield Pipeline(
            platform.emulator,
            platform.control,
            platform.store,
            platform.inbox,
            engine,
            platform.hosts,
            platform.make_host,
            platform.outbox,
            platform.busy,
        )


@pytest.fixture
async def pipeline(redis: aioredis.Redis, tmp_path: Path) -> AsyncIterator[Pipeline]:
    async with running_pipeline(redis, tmp_path / "whatsray.duckdb", agents_config()) as running:
        yield running


async def test_a_user_message_gets_one_reply(pipeline: Pipeline) -> None:
    wamid = await pipeline.user_says("15551230001", "hello there")
    assert await pipeline.replies_to("15551230001", 1) == ["echo: hello there"]
    stored = await pipeline.store.get_message(wamid)
    assert stored is not None and stored.turn_id is not None  # consumed by a committed turn
    turn = await pipeline.store.get_turn(stored.turn_id)
    assert turn is not None and turn.agent_outcome == "ok"  # the agent's own (docs/analytics.md)
    # The typing indicator and blue ticks went out for the user's message.
    reads = pipeline.emulator.outbound(kind="read")
    assert [(r.body["message_id"], r.body.get("typing_indicator")) for r in reads] == [
        (wamid, {"type": "text"})
    ]


async def test_without_ray_a_message_is_counted_in_the_metrics(
    pipeline: Pipeline, recorded: MetricsProbe
) -> None:
    await pipeline.user_says("15551230009", "count me")
    assert await pipeline.replies_to("15551230009", 1) == ["echo: count me"]
    await pipeline.quiet()  # the statuses of the reply are in too

    turns = recorded.value("whatsray_turns_total", agent="assistant", outcome="ok")
    assert turns == 1
    assert recorded.value("whatsray_turn_seconds_count", agent="assistant") == 1
    for stage in ("queue", "route", "llm", "commit"):
        assert recorded.value("whatsray_turn_stage_seconds_count", stage=stage) == 1, stage
    assert recorded.value("whatsray_llm_requests_total", result="ok") == 1
    assert recorded.value("whatsray_outbox_sends_total", result="sent") == 1
    assert recorded.value("whatsray_outbox_events_total", event="submitted") == 1
    assert recorded.value("whatsray_statuses_total", status="read") == 1
    # The message, then the reply's status webhooks (as many as the emulator batched them in).
    assert recorded.value("whatsray_webhook_requests_total", result="accepted") >= 2
    assert recorded.value("whatsray_webhook_requests_total", result="duplicate") == 0
    assert recorded.value("whatsray_routes_total", agent="assistant") == 1


async def test_a_webhook_delivered_five_times_is_answered_once(pipeline: Pipeline) -> None:
    await pipeline.user_says("15551230002", "only once", duplicates=5)
    assert await pipeline.replies_to("15551230002", 1) == ["echo: only once"]
    await pipeline.quiet()
    assert len(pipeline.emulator.outbound(to="15551230002")) == 1
    assert await pipeline.store.count_turns() == 1


async def test_many_chats_each_answered_in_order(pipeline: Pipeline) -> None:
    users = [f"1555123{i:04d}" for i in range(20)]
    for round_ in range(3):
        await asyncio.gather(*(pipeline.user_says(u, f"m{round_}") for u in users))
    for user in users:
        assert await pipeline.replies_to(user, 3) == ["echo: m0", "echo: m1", "echo: m2"]


async def test_status_webhooks_reach_the_outbound_record(pipeline: Pipeline) -> None:
    await pipeline.user_says("15551230003", "track me")
    await pipeline.replies_to("15551230003", 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # Only the reply is outbound for this chat: its status climbs to "read".
        if await pipeline.store.count_outbound(status="read") == 1:
            break
        await asyncio.sleep(0.1)
    assert await pipeline.store.count_outbound(status="read") == 1


async def test_a_host_restarted_mid_turn_answers_exactly_once(pipeline: Pipeline) -> None:
    user = "15551230004"
    partition = partition_for(
        ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=user), PARTITIONS
    )
    gate = asyncio.Event()  # never set: the first attempt hangs in the model until the "crash"
    pipeline.engine.delay_call(pipeline.engine.call_count + 1, gate)
    await pipeline.user_says(user, "survive this")
    await pipeline.engine.wait_for_calls(1)
    await pipeline.restart_host(partition)  # the turn dies uncommitted, so nothing was acked
    assert await pipeline.replies_to(user, 1) == ["echo: survive this"]
    await pipeline.quiet()
    assert len(pipeline.emulator.outbound(to=user)) == 1
    assert await pipeline.inbox.pending_count(partition) == 0


async def test_a_draining_host_finishes_its_turn_and_the_next_host_takes_the_rest(
    pipeline: Pipeline,
) -> None:
    # A new release takes the partition over (actors/rollout.py): the turn in hand is answered
    # and acked by the old host; what it did not read is the next host's, answered once.
    user = "15551230014"
    partition = partition_for(
        ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=user), PARTITIONS
    )
    gate = asyncio.Event()
    pipeline.engine.delay_call(pipeline.engine.call_count + 1, gate)
    first = await pipeline.user_says(user, "first")
    await pipeline.engine.wait_for_calls(1)  # the turn is in hand, in the model
    draining = asyncio.create_task(pipeline.hosts[partition].drain(grace_s=10))
    await pipeline.user_says(user, "second")
    gate.set()
    await draining
    assert await pipeline.replies_to(user, 1) == ["echo: first"]
    # Acked: the next host does not get "first" again. ("second" may be pending: a read cut
    # off by the drain leaves it delivered to the partition's consumer, which the next reads.)
    left = await pipeline.inbox.read_pending(partition, consumer_name(partition))
    assert first not in [getattr(entry.event, "message_id", None) for entry in left]

    pipeline.hosts[partition] = pipeline.make_host(partition)
    await pipeline.hosts[partition].start()
    assert await pipeline.replies_to(user, 2) == ["echo: first", "echo: second"]
    await pipeline.quiet()
    assert len(pipeline.emulator.outbound(to=user)) == 2


async def test_replies_recorded_before_a_crash_are_sent_by_the_next_outbox(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    from whatsray.pipeline.committer import outbound_items

    user = "15551230005"
    await pipeline.user_says(user, "open my window")
    await pipeline.replies_to(user, 1)
    chat = ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=user)
    # A commit recorded this reply, then the process died before the outbox sent it.
    await no_pending_sends(pipeline.store)
    [item] = outbound_items(chat, "turn-crashed", ["sent after restart"], time.time())
    assert await pipeline.store.record_outbound(item)
    graph = GraphClient(
        pipeline.control, TOKEN, DEFAULT_PHONE_NUMBER_ID, base_url="http://emulator"
    )
    async with Outbox(DEFAULT_PHONE_NUMBER_ID, graph, pipeline.store) as restarted:
        assert await restarted.resume_pending() == 1
        texts = await pipeline.replies_to(user, 2)
        await no_pending_sends(pipeline.store)
        assert await restarted.resume_pending() == 0  # sent: nothing left to resume
    assert texts == ["echo: open my window", "sent after restart"]


async def no_pending_sends(store: Store) -> None:
    """Until every recorded send has its outcome stored (the outbox marks them asynchronously)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not await store.count_outbound(status="pending"):
            return
        await asyncio.sleep(0.05)


class LookupArgs(ToolArguments):
    order: str = ""


async def test_an_interrupted_tool_call_is_stored_cancelled_and_the_rerun_sees_it(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    """`interrupt` policy: the first attempt is inside a tool call when the user writes again.
    The stored turn has that call with the result `cancelled`, and the rerun's model got it with
    its result (a complete history: no tool call without an answer)."""
    started, stopped = asyncio.Event(), asyncio.Event()

    async def lookup(args: LookupArgs, ctx: Any) -> str:
        started.set()
        try:
            await asyncio.Event().wait()  # the lookup hangs until the interrupt stops it
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "never"

    tools = BUILTIN_TOOLS.with_tools(Tool("lookup", "Look up an order.", LookupArgs, lookup))

    def respond(messages: Sequence[ChatMessage]) -> Any:
        if any(m.role == "tool" for m in messages):
            return "Found order 4711."
        return {"tool_calls": [{"name": "lookup", "arguments": {"order": "?"}}]}

    engine = ScriptedEngine(responder=respond)
    config = parse_agents_config(
        {
            "engines": {"scripted": {"engine": "scripted"}},
            "router": {"default_agent": "assistant", "classifier": False},
            "agents": [
                {
                    "name": "assistant",
                    "description": "support",
                    "system_prompt": "Help.",
                    "engine": "scripted",
                    "double_texting": "interrupt",
                    "tools": ["lookup"],
                }
            ],
        },
        tool_registry=tools,
    )
    user = "15551230009"
    async with running_pipeline(
        redis, tmp_path / "w.duckdb", config, engine_factory=lambda _: engine, tools=tools
    ) as pipeline:
        await pipeline.user_says(user, "where is my order?")
        await started.wait()
        await pipeline.user_says(user, "it is 4711")
        assert await pipeline.replies_to(user, 1) == ["Found order 4711."]
        assert stopped.is_set()
        chat = ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=user)
        [turn] = await pipeline.store.list_turns(chat)
        assert len(turn.input_ids) == 2  # the rerun answered both messages
        [call] = await pipeline.store.list_tool_calls(turn.turn_id)
        assert (call.name, call.result, call.status) == ("lookup", "cancelled", "cancelled")
        rerun = engine.calls[-1].messages
        asked = [c.id for m in rerun for c in m.tool_calls]
        answered = [m.tool_call_id for m in rerun if m.role == "tool"]
        assert asked == answered and len(asked) == 1
        assert json.loads(rerun[-1].content)["error"].startswith("cancelled")
        await pipeline.quiet()
        assert len(pipeline.emulator.outbound(to=user)) == 1


# --- backpressure --------------------------------------------------------------------------


def _busy_config(**backpressure: Any) -> AgentsConfig:
    return parse_agents_config(
        {
            "engines": {
                "primary": {"engine": "scripted", "model": "primary"},
                "spare": {"engine": "scripted", "model": "spare"},
            },
            "router": {"default_agent": "assistant", "classifier": False},
            "agents": [
                {
                    "name": "assistant",
                    "description": "general assistant",
                    "system_prompt": "Be brief.",
                    "engine": "primary",
                    "double_texting": "enqueue",
                    "backpressure": {"max_concurrent_turns": 1, **backpressure},
                }
            ],
        }
    )


def _engines(release: asyncio.Event) -> EngineFactory:
    """`primary` answers "slow ..." messages only once `release` is set; `spare` at once."""

    def build(spec: Any) -> ScriptedEngine:
        name = spec["model"]

        async def respond(messages: Sequence[ChatMessage]) -> str:
            text = messages[-1].content
            if name == "primary" and text.startswith("slow"):
                await release.wait()
            return f"{name}: {text}"

        return ScriptedEngine(responder=respond, name=name)

    return build


async def test_a_waiting_user_hears_one_moment_once_and_no_turn_is_dropped(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    """One slot, taken by a slow turn: the next chat's turn queues, its user gets the notice
    once after `notice_after_s`, and both answers arrive when inference frees up."""
    release = asyncio.Event()
    config = _busy_config(notice_after_s=0.3, notice_text="One moment please!")
    async with running_pipeline(
        redis, tmp_path / "w.duckdb", config, engine_factory=_engines(release)
    ) as pipeline:
        await pipeline.user_says("15551230101", "slow question")
        await asyncio.sleep(0.3)  # the slow turn holds the slot
        await pipeline.user_says("15551230102", "quick question")
        assert (await pipeline.replies_to("15551230102", 1))[:1] == ["One moment please!"]
        await asyncio.sleep(0.5)  # time for a second notice, which must not come
        release.set()
        waited = await pipeline.replies_to("15551230102", 2)
        assert waited == ["One moment please!", "primary: quick question"]
        slow = await pipeline.replies_to("15551230101", 2)
        assert slow[-1] == "primary: slow question"
        notices = sum(host.stats()["notices_sent"] for host in pipeline.hosts)
        assert notices == len(slow) - 1 + 1  # the slow chat waited too, while B queued


async def test_a_fallback_engine_takes_the_turns_that_would_wait(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    release = asyncio.Event()
    config = _busy_config(notice_after_s=None, fallback_engine="spare", fallback_after_s=0.2)
    async with running_pipeline(
        redis, tmp_path / "w.duckdb", config, engine_factory=_engines(release)
    ) as pipeline:
        await pipeline.user_says("15551230201", "slow question")
        await asyncio.sleep(0.3)
        await pipeline.user_says("15551230202", "quick question")
        assert await pipeline.replies_to("15551230202", 1) == ["spare: quick question"]
        assert pipeline.emulator.outbound(to="15551230201") == []  # still on the primary
        release.set()
        assert await pipeline.replies_to("15551230201", 1) == ["primary: slow question"]


# --- batching (docs/hot-path.md) -------------------------------------------------------------


async def eventually(check: Callable[[], bool], within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


async def test_turns_that_end_while_a_commit_is_in_flight_share_the_next_store_call(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = [f"1555124{i:04d}" for i in range(12)]
    partition = partition_for(
        ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=users[0]), PARTITIONS
    )
    ours = [
        u
        for u in users
        if partition_for(ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=u), PARTITIONS)
        == partition
    ]
    host = pipeline.hosts[partition]
    release = asyncio.Event()
    calls: list[int] = []
    commit_turns = pipeline.store.commit_turns

    async def held_first_call(commits: Any) -> Any:
        calls.append(len(commits))
        if len(calls) == 1:
            await release.wait()  # the first commit is slow: the other turns queue behind it
        return await commit_turns(commits)

    monkeypatch.setattr(pipeline.store, "commit_turns", held_first_call)
    await pipeline.user_says(ours[0], "first")
    await eventually(lambda: bool(calls))
    await asyncio.gather(*(pipeline.user_says(u, "next") for u in ours[1:]))
    # Every other turn ends and waits to commit behind the first.
    await eventually(lambda: host.committer.batcher.queued == len(ours) - 1)
    release.set()
    for user in ours:
        assert len(await pipeline.replies_to(user, 1)) == 1
    await pipeline.quiet()
    assert calls == [1, len(ours) - 1]  # two store calls for all of these chats' turns
    assert await pipeline.store.count_turns() == len(ours)


async def test_a_crash_between_the_commit_and_the_ack_redelivers_and_sends_nothing_new(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = "15551250001"
    partition = partition_for(
        ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=user), PARTITIONS
    )
    acked: list[str] = []
    ack = pipeline.inbox.ack

    async def lost_acks(p: int, tokens: Sequence[str]) -> int:
        if p != partition:
            return await ack(p, tokens)
        acked.extend(tokens)  # the host dies before its XACK reaches Redis
        return 0

    monkeypatch.setattr(pipeline.inbox, "ack", lost_acks)
    await pipeline.user_says(user, "once only")
    assert await pipeline.replies_to(user, 1) == ["echo: once only"]
    await eventually(lambda: bool(acked))
    assert await pipeline.inbox.pending_count(partition) >= 1  # committed, never acked
    monkeypatch.setattr(pipeline.inbox, "ack", ack)
    turns, outbound = await pipeline.store.count_turns(), await pipeline.store.count_outbound()

    await pipeline.restart_host(partition)  # what Ray does: the pending entries come back
    await pipeline.quiet()

    assert len(pipeline.emulator.outbound(to=user)) == 1
    assert await pipeline.store.count_turns() == turns
    assert await pipeline.store.count_outbound() == outbound
    assert await pipeline.inbox.pending_count(partition) == 0


async def test_a_reply_committed_but_never_dispatched_is_sent_by_the_restarted_host(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host died after its batch's commit and before the dispatch: the redelivered entry
    is committed already (acked, no new turn), so the restarted host has the outbox take the
    recorded reply up."""
    user = "15551260001"
    partition = partition_for(
        ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=user), PARTITIONS
    )
    dispatch = pipeline.outbox.dispatch
    lost: list[Any] = []

    async def host_died(items: Any, *args: Any, **kwargs: Any) -> None:
        lost.extend(items)  # committed; the dispatch never left the dying host
        raise ConnectionError("the host died")

    monkeypatch.setattr(pipeline.outbox, "dispatch", host_died)
    await pipeline.user_says(user, "do not lose me")
    await eventually(lambda: bool(lost))
    await pipeline.restart_host(partition)  # the failed turn's retry dies with the old host
    monkeypatch.setattr(pipeline.outbox, "dispatch", dispatch)
    assert await pipeline.replies_to(user, 1, within_s=30) == ["echo: do not lose me"]
    await pipeline.quiet()
    assert len(pipeline.emulator.outbound(to=user)) == 1
    assert await pipeline.store.count_outbound(status="pending") == 0


# --- read receipts and typing: best effort (issue 11) ----------------------------------------


async def test_read_receipts_meta_refuses_cost_the_user_nothing(pipeline: Pipeline) -> None:
    """Every mark-as-read is answered 131009 (as Meta answers a message id it does not
    accept): the user still gets the reply, once, and nothing is left pending or unacked."""
    user = "15551270001"
    faults = {"read_errors": {"code": 131009}}  # every one, until cleared
    assert (await pipeline.control.post("/emulator/faults", json=faults)).status_code == 200
    wamid = await pipeline.user_says(user, "are you there?")
    assert await pipeline.replies_to(user, 1) == ["echo: are you there?"]
    await pipeline.quiet()

    assert len(pipeline.emulator.outbound(to=user)) == 1
    reads = pipeline.emulator.outbound(kind="read")
    assert [(r.body["message_id"], r.outcome, r.error_code) for r in reads] == [
        (wamid, "rejected", 131009)
    ]
    assert await pipeline.store.count_outbound(status="pending") == 0
    for partition in range(PARTITIONS):
        assert await pipeline.inbox.pending_count(partition) == 0
    stored = await pipeline.store.get_message(wamid)
    assert stored is not None and stored.turn_id is not None
    assert await pipeline.store.count_turns() == 1  # one turn: the failure retried nothing


@pytest.mark.parametrize("failure", ["raises", "hangs"])
async def test_a_typing_refresh_that_fails_does_not_stop_the_turn(
    redis: aioredis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """The outbox is out of reach for read receipts (its actor down: the call raises; or
    restarting: it never answers) while a long turn refreshes the typing indicator."""
    from whatsray.pipeline import host as host_module
    from whatsray.pipeline.waiting import WaitingNotice

    refresh_s = 0.01
    typing_wakes: list[float] = []
    woke = asyncio.Event()

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)
        if seconds == refresh_s:  # the typing loop, about to refresh
            typing_wakes.append(seconds)
            woke.set()

    monkeypatch.setattr(
        host_module,
        "WaitingNotice",
        lambda: WaitingNotice(sleep=sleep, typing_refresh_s=refresh_s),
    )
    user = "15551270002"
    async with running_pipeline(redis, tmp_path / "w.duckdb", agents_config()) as pipeline:
        calls: list[Sequence[str]] = []
        never = asyncio.Event()

        async def unreachable(message_ids: Sequence[str], typing_indicator: bool = True) -> None:
            calls.append(message_ids)
            if failure == "raises":
                raise ConnectionError("the outbox actor is unreachable")
            await never.wait()

        monkeypatch.setattr(pipeline.outbox, "mark_reads", unreachable)
        gate = asyncio.Event()  # the model answers once the typing refresh has failed
        pipeline.engine.delay_call(pipeline.engine.call_count + 1, gate)
        await pipeline.user_says(user, "take your time")
        await pipeline.engine.wait_for_calls(1)
        if failure == "raises":  # two refreshes failed, and the turn went on waiting
            await eventually(lambda: len(typing_wakes) >= 3 and len(calls) >= 3)
        else:  # the receipt's call hangs; the refresh is stuck behind it
            await woke.wait()
        gate.set()

        assert await pipeline.replies_to(user, 1) == ["echo: take your time"]
        await pipeline.quiet()
        assert len(pipeline.emulator.outbound(to=user)) == 1
        assert await pipeline.store.count_turns() == 1
        assert await pipeline.store.count_outbound(status="pending") == 0
        for partition in range(PARTITIONS):
            assert await pipeline.inbox.pending_count(partition) == 0
        never.set()
