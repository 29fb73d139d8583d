"""Backpressure: fair admission across chats, the fallback engine, load reports, and the
"one moment" notice. Real asyncio, no sleeps on the clock: waiters are released by events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from whatsray.agents.admission import FairAdmission, SlotTimeout
from whatsray.agents.agent import AgentOutcome, AgentTurnRequest, AgentTurnResult
from whatsray.agents.backpressure import AgentLoad, GatedAgent, combine_loads
from whatsray.llm import ChatEngine, EngineLoad, ScriptedEngine
from whatsray.pipeline.waiting import WaitingNotice
from whatsray.session.turns import ToolCallJournal


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# --- FairAdmission --------------------------------------------------------------------------


async def test_admission_runs_up_to_capacity_at_once() -> None:
    admission = FairAdmission(2)
    gate = asyncio.Event()
    inside: list[str] = []

    async def turn(chat: str) -> None:
        async with admission.slot(chat):
            inside.append(chat)
            await gate.wait()

    tasks = [asyncio.create_task(turn(f"c{i}")) for i in range(5)]
    await _settle()
    assert len(inside) == 2
    assert admission.load() == EngineLoad(running=2, waiting=3, capacity=2)
    assert admission.load().saturated
    gate.set()
    await asyncio.gather(*tasks)
    assert len(inside) == 5
    assert admission.load() == EngineLoad(running=0, waiting=0, capacity=2)
    stats = admission.stats()
    assert (stats.admitted, stats.waited) == (5, 3)


async def test_a_burst_from_one_chat_does_not_starve_the_others() -> None:
    """Chat A queues 5 turns before B and C queue one each: B and C get in after A's first."""
    admission = FairAdmission(1)
    release: dict[str, asyncio.Event] = {}
    order: list[str] = []

    async def turn(label: str, chat: str) -> None:
        async with admission.slot(chat):
            order.append(label)
            release[label] = event = asyncio.Event()
            await event.wait()

    blocker = asyncio.create_task(turn("x", "x"))
    await _settle()
    tasks = [asyncio.create_task(turn(f"a{i}", "A")) for i in range(5)]
    await _settle()
    tasks += [asyncio.create_task(turn("b", "B")), asyncio.create_task(turn("c", "C"))]
    await _settle()
    for _ in range(8):
        release[order[-1]].set()
        await _settle()
    await asyncio.gather(blocker, *tasks)
    assert order == ["x", "a0", "b", "c", "a1", "a2", "a3", "a4"]


async def test_a_cancelled_waiter_leaves_the_queue_without_taking_a_slot() -> None:
    admission = FairAdmission(1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with admission.slot("a"):
            await gate.wait()

    holder = asyncio.create_task(hold())
    await _settle()
    waiter = asyncio.create_task(hold())
    await _settle()
    assert admission.waiting == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert admission.waiting == 0
    gate.set()
    await holder
    assert admission.running == 0
    async with admission.slot("b"):  # the slot is free again
        assert admission.running == 1


async def test_waiting_longer_than_allowed_raises_slot_timeout_and_frees_the_place() -> None:
    admission = FairAdmission(1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with admission.slot("a"):
            await gate.wait()

    holder = asyncio.create_task(hold())
    await _settle()
    with pytest.raises(SlotTimeout):
        async with admission.slot("b", wait_s=0.01):
            pytest.fail("must not get a slot")
    assert admission.waiting == 0
    assert admission.stats().timed_out == 1
    gate.set()
    await holder


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FairAdmission(0)


# --- GatedAgent ------------------------------------------------------------------------------


class FakeAgent:
    """Records which engine each turn ran on; turns wait on `gate` when it is set up."""

    def __init__(self, engine: ChatEngine, *, failing: str | None = None) -> None:
        self.name = "helper"
        self.engine = engine
        self.gate: asyncio.Event | None = None
        self.ran_on: list[str] = []
        self.failing = failing  # an error type the primary engine's turns report

    async def run(
        self,
        request: AgentTurnRequest,
        journal: ToolCallJournal | None = None,
        *,
        engine: ChatEngine | None = None,
    ) -> AgentTurnResult:
        used = engine or self.engine
        self.ran_on.append(used.name)
        if self.gate is not None and engine is None:
            await self.gate.wait()
        if self.failing and engine is None:
            return AgentTurnResult(
                self.name, ("sorry",), AgentOutcome.ENGINE_ERROR, error_type=self.failing
            )
        return AgentTurnResult(self.name, (f"answer from {used.name}",), AgentOutcome.OK)


def _request(chat: str, turn: str = "t") -> AgentTurnRequest:
    return AgentTurnRequest(turn_id=turn, chat=chat, inputs=("hi",))


async def test_a_saturated_agent_sends_waiting_turns_to_the_fallback_engine() -> None:
    agent = FakeAgent(ScriptedEngine(["x"], name="primary"))
    agent.gate = asyncio.Event()
    gated = GatedAgent(
        agent, 1, fallback=ScriptedEngine(["y"], name="fallback"), fallback_after_s=0.01
    )
    first = asyncio.create_task(gated.run(_request("c1", "t1")))
    await _settle()
    second = await gated.run(_request("c2", "t2"))
    assert second.reply_parts == ("answer from fallback",)
    agent.gate.set()
    assert (await first).reply_parts == ("answer from primary",)
    load = await gated.load()
    assert load.fallback_turns == 1
    assert load.running == 0


async def test_without_a_fallback_turns_wait_and_none_is_dropped() -> None:
    agent = FakeAgent(ScriptedEngine(["x"], name="primary"))
    agent.gate = asyncio.Event()
    gated = GatedAgent(agent, 1, fallback_after_s=0.01)
    tasks = [asyncio.create_task(gated.run(_request(f"c{i}", f"t{i}"))) for i in range(4)]
    await _settle()
    load = await gated.load()
    assert (load.running, load.waiting, load.waiting_chats) == (1, 3, 3)
    assert load.saturated
    agent.gate.set()
    results = await asyncio.gather(*tasks)
    assert [r.reply_parts for r in results] == [("answer from primary",)] * 4
    assert agent.ran_on == ["primary"] * 4


async def test_an_engine_that_is_down_hands_the_turn_to_the_fallback() -> None:
    agent = FakeAgent(ScriptedEngine(["x"], name="primary"), failing="LLMUnavailable")
    gated = GatedAgent(agent, 2, fallback=ScriptedEngine(["y"], name="fallback"))
    result = await gated.run(_request("c1"))
    assert result.reply_parts == ("answer from fallback",)
    assert agent.ran_on == ["primary", "fallback"]


async def test_a_bad_request_is_not_retried_on_the_fallback() -> None:
    agent = FakeAgent(ScriptedEngine(["x"], name="primary"), failing="LLMBadRequest")
    gated = GatedAgent(agent, 2, fallback=ScriptedEngine(["y"], name="fallback"))
    result = await gated.run(_request("c1"))
    assert result.outcome is AgentOutcome.ENGINE_ERROR
    assert agent.ran_on == ["primary"]


class LoadedEngine(ScriptedEngine):
    def __init__(self, load: EngineLoad) -> None:
        super().__init__(["x"], name="vllm")
        self._load = load

    async def load(self) -> EngineLoad:
        return self._load


async def test_load_includes_what_the_engine_reports() -> None:
    busy = EngineLoad(running=8, waiting=5, capacity=8)
    gated = GatedAgent(FakeAgent(LoadedEngine(busy)), 4)
    load = await gated.load()
    assert load.engine == busy
    assert load.saturated  # the engine queues requests although this worker is idle
    idle = await GatedAgent(FakeAgent(LoadedEngine(EngineLoad(capacity=8))), 4).load()
    assert not idle.saturated


def test_combine_loads_adds_counts_and_keeps_the_busiest_engine() -> None:
    a = AgentLoad("faq", running=1, waiting=2, capacity=4, engine=EngineLoad(running=3))
    b = AgentLoad("faq", running=2, waiting=0, capacity=4, engine=EngineLoad(waiting=1))
    total = combine_loads("faq", [a, b])
    assert (total.running, total.waiting, total.capacity, total.workers) == (3, 2, 8, 2)
    assert total.engine == EngineLoad(waiting=1)
    assert total.as_dict()["saturated"] is True


# --- WaitingNotice ---------------------------------------------------------------------------


class ManualSleep:
    """`sleep` that returns only when the test lets it: `await clock.tick()` releases one."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self._queue: asyncio.Queue[asyncio.Event] = asyncio.Queue()

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        event = asyncio.Event()
        await self._queue.put(event)
        await event.wait()

    async def tick(self) -> None:
        (await self._queue.get()).set()
        await _settle()


async def _watch(notice: WaitingNotice, *, busy: bool, log: list[str], body: Any) -> None:
    async def typing() -> None:
        log.append("typing")

    async def saturated() -> bool:
        return busy

    async def send() -> None:
        log.append("notice")

    async with notice.watch(
        refresh_typing=typing, saturated=saturated, send_notice=send, notice_after_s=8.0
    ):
        await body()


async def test_the_notice_goes_out_once_when_saturated_and_typing_stays_on() -> None:
    clock = ManualSleep()
    notice = WaitingNotice(sleep=clock)
    log: list[str] = []
    done = asyncio.Event()
    watcher = asyncio.create_task(_watch(notice, busy=True, log=log, body=done.wait))
    await _settle()
    assert sorted(clock.calls) == [8.0, 20.0]
    for _ in range(3):  # the notice timer and two typing refreshes fire
        await clock.tick()
    done.set()
    await watcher
    assert log.count("notice") == 1
    assert log.count("typing") >= 1
    assert notice.stats.notices_sent == 1


async def test_no_notice_when_inference_is_not_saturated() -> None:
    clock = ManualSleep()
    notice = WaitingNotice(sleep=clock)
    log: list[str] = []
    done = asyncio.Event()
    watcher = asyncio.create_task(_watch(notice, busy=False, log=log, body=done.wait))
    await _settle()
    await clock.tick()
    await clock.tick()
    done.set()
    await watcher
    assert "notice" not in log
    assert notice.stats.notices_sent == 0


async def test_a_fast_turn_sends_nothing() -> None:
    notice = WaitingNotice(sleep=ManualSleep())
    log: list[str] = []

    async def quick() -> None:
        return None

    await _watch(notice, busy=True, log=log, body=quick)
    assert log == []


# --- the admin API's view -------------------------------------------------------------------


async def test_the_admin_api_shows_the_load_and_needs_the_token() -> None:
    import httpx
    from fastapi import FastAPI

    from whatsray.admin import create_admin_router

    agent = FakeAgent(ScriptedEngine(["x"], name="primary"))
    agent.gate = asyncio.Event()
    gated = GatedAgent(agent, 1)
    tasks = [asyncio.create_task(gated.run(_request(f"c{i}", f"t{i}"))) for i in range(3)]
    await _settle()

    async def report() -> dict[str, Any]:
        load = combine_loads("helper", [await gated.load()])
        return {"agents": [load.as_dict()], "notices_sent": 1, "typing_refreshes": 0}

    app = FastAPI()
    app.include_router(
        create_admin_router(
            admin_token="secret-token",
            store=None,  # type: ignore[arg-type]  # the inference route reads no store
            outbox_for=lambda _: None,  # type: ignore[arg-type,return-value]
            phone_number_ids=["111"],
            inference=report,
        )
    )
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        refused = await client.get("/api/inference")
        answer = await client.get(
            "/api/inference", headers={"Authorization": "Bearer secret-token"}
        )
    agent.gate.set()
    await asyncio.gather(*tasks)
    assert refused.status_code == 401
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["notices_sent"] == 1
    [helper] = body["agents"]
    assert (helper["agent"], helper["saturated"], helper["running"], helper["waiting"]) == (
        "helper",
        True,
        1,
        2,
    )
