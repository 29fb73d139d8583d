"""The reminder tools and the greeting opt-in, driven by the scripted engine's tool calls, over a
real `SchedulerCore` on a real DuckDB store and a fake clock: schedule, list, update, cancel; a
reminder of another chat is "not found"; bad times go back to the model; a retried turn makes
one job; `/subscribe` runs without the model; the prompt says what time it is."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.recording_sink import RecordingSink
from tests.unit.tools_harness import CHAT, OTHER, FakePlatform, calls, make_agent, turn
from whatsray.agents import Agent
from whatsray.llm import ScriptedEngine
from whatsray.scheduling import CronSpec, DateSpec, JobSpec, SchedulerCore
from whatsray.session.turns import ToolCallStatus
from whatsray.store import Store
from whatsray.tools import (
    BUILTIN_TOOLS,
    PlatformToolServices,
    UnavailableToolServices,
    clock_note,
    reminder_job_id,
)

T0 = datetime(2026, 11, 22, 13, 0, tzinfo=UTC).timestamp()  # a Sunday, 14:00 in Berlin
BERLIN = "Europe/Berlin"
REMINDER_TOOLS = ("schedule_reminder", "list_reminders", "update_reminder", "cancel_reminder")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    store: Store
    core: SchedulerCore
    clock: Clock
    platform: FakePlatform

    def services(self, *, jobs: bool = True) -> PlatformToolServices:
        return PlatformToolServices(
            self.platform.store,
            lambda _pnid: self.platform.outbox,
            jobs=self.core if jobs else None,
            default_timezone=BERLIN,
            opt_in=self.store,
        )

    def agent(
        self, engine: ScriptedEngine, tools: Sequence[str] = REMINDER_TOOLS, **fields: Any
    ) -> Agent:
        agent = make_agent(engine, tools=tools, **fields)
        agent.services = self.services()
        agent._now = self.clock  # the prompt's clock and the tools' "now"
        return agent


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = Clock(T0)
    async with Store(tmp_path / "s.duckdb", now=clock) as store:
        core = SchedulerCore(
            store, RecordingSink(), default_timezone=BERLIN, now=clock, timers=False
        )
        await core.start()
        yield World(store, core, clock, FakePlatform())
        await core.close()


def result_of(result: str | None) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(result or "{}")
    return value


def error_of(result: str | None) -> str:
    return str(result_of(result)["error"])


async def test_schedule_a_one_shot_reminder_in_the_default_zone(world: World) -> None:
    engine = ScriptedEngine(
        [calls(("schedule_reminder", {"text": "call mom", "at": "2026-11-23T09:00"})), "Sure!"]
    )
    result = await world.agent(engine).run(turn("remind me tomorrow at 9 to call mom"))
    assert result.reply_parts == ("Sure!",)
    [call] = result.tool_calls
    assert call.status is ToolCallStatus.OK
    out = result_of(call.result)
    assert out["scheduled"] is True and out["repeat"] is False
    assert out["next_run"] == "2026-11-23 09:00 (Monday)" and out["timezone"] == BERLIN
    [job] = await world.core.list_jobs(kind="reminder")
    assert job.id == out["id"] == reminder_job_id(CHAT, "turn-1", 0)
    assert job.chat == str(CHAT) and job.payload == {"text": "call mom"}
    assert job.trigger == DateSpec(run_at=datetime(2026, 11, 23, 9, 0)) and job.timezone == BERLIN
    assert job.next_run_at == datetime(2026, 11, 23, 8, 0, tzinfo=UTC).timestamp()


async def test_the_prompt_has_the_current_date_and_time(world: World) -> None:
    engine = ScriptedEngine(["ok"])
    await world.agent(engine).run(turn("what can you do?"))
    system = engine.calls[0].messages[0]
    assert system.role == "system" and system.content.startswith("You help.")
    assert system.content.endswith(clock_note(T0, BERLIN))
    assert "Sunday, 2026-11-22 14:00 (Europe/Berlin)" in system.content
    # An agent without clock tools is told nothing of the sort.
    plain = ScriptedEngine(["ok"])
    await world.agent(plain, tools=("get_messages",)).run(turn("hi"))
    assert plain.calls[0].messages[0].content == "You help."


async def test_a_repeating_reminder_then_list_update_and_cancel(world: World) -> None:
    engine = ScriptedEngine(
        [
            calls(("schedule_reminder", {"text": "water the plants", "cron": "0 18 * * 1-5"})),
            "Done.",
        ]
    )
    first = await world.agent(engine).run(turn("remind me on weekdays at 6pm to water"))
    job_id = result_of(first.tool_calls[0].result)["id"]
    assert result_of(first.tool_calls[0].result)["next_run"] == "2026-11-23 18:00 (Monday)"

    engine = ScriptedEngine(
        [
            calls(("list_reminders", {})),
            calls(("update_reminder", {"id": job_id, "cron": "30 19 * * 1-5", "text": "water!"})),
            "Changed.",
        ]
    )
    second = await world.agent(engine).run(turn("make it 19:30", turn_id="turn-2"))
    listed, updated = second.tool_calls
    [view] = result_of(listed.result)["reminders"]
    assert view["id"] == job_id and view["text"] == "water the plants" and view["active"]
    assert result_of(updated.result)["next_run"] == "2026-11-23 19:30 (Monday)"
    job = await world.core.get_job(job_id)
    assert job.trigger == CronSpec(expression="30 19 * * 1-5") and job.payload["text"] == "water!"

    engine = ScriptedEngine([calls(("cancel_reminder", {"id": job_id})), "Cancelled."])
    third = await world.agent(engine).run(turn("cancel it", turn_id="turn-3"))
    assert result_of(third.tool_calls[0].result)["cancelled"] is True
    assert await world.core.list_jobs(kind="reminder") == []


async def test_another_chats_reminder_is_not_found_and_left_alone(world: World) -> None:
    theirs = await world.core.create_job(
        JobSpec(
            id="theirs",
            name="their reminder",
            chat=str(OTHER),
            payload={"text": "secret"},
            trigger=CronSpec(expression="0 9 * * *"),
        )
    )
    system = await world.core.create_job(
        JobSpec(
            id="sys",
            name="cleanup",
            kind="system",
            payload={"task": "cleanup"},
            trigger=CronSpec(expression="0 3 * * *"),
        )
    )
    engine = ScriptedEngine(
        [
            calls(
                ("list_reminders", {}),
                ("update_reminder", {"id": "theirs", "text": "hacked"}),
                ("cancel_reminder", {"id": "theirs"}),
                ("cancel_reminder", {"id": "sys"}),
                ("update_reminder", {"id": "nope", "text": "x"}),
            ),
            "ok",
        ]
    )
    result = await world.agent(engine).run(turn("cancel reminder theirs"))
    listed, *refused = result.tool_calls
    assert result_of(listed.result) == {"reminders": []}
    assert [error_of(c.result) for c in refused] == [
        "no reminder 'theirs' in this chat (list_reminders shows them)",
        "no reminder 'theirs' in this chat (list_reminders shows them)",
        "no reminder 'sys' in this chat (list_reminders shows them)",
        "no reminder 'nope' in this chat (list_reminders shows them)",
    ]
    assert all(c.status is ToolCallStatus.ERROR for c in refused)
    assert await world.core.get_job("theirs") == theirs
    assert (await world.core.get_job("sys")).enabled == system.enabled


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"at": "2026-11-22T09:00"}, "at: 2026-11-22T09:00 is in the past (it is now "
         "2026-11-22 14:00 (Sunday) in Europe/Berlin)"),
        ({"at": "tomorrow 9am"}, "invalid arguments: at: String should match pattern"),
        ({"at": "2026-11-23"}, "invalid arguments: at: String should match pattern"),
        ({"at": "2026-11-31T09:00"}, "at: not a date and time: '2026-11-31T09:00' (write it "
         "like 2026-11-23T09:00)"),
        ({"cron": "every day at 9"}, "invalid arguments: cron: String should match pattern"),
        ({"cron": "0 25 * * *"}, "cron: invalid cron expression '0 25 * * *': "),
        ({"at": "2026-11-23T09:00", "timezone": "Moon/Base"}, "timezone: unknown time zone "
         "'Moon/Base'"),
        ({"at": "2026-11-23T09:00", "cron": "0 9 * * *"}, "give either at (once) or cron "
         "(repeating), not both"),
        ({}, "say when: at (a date and time, once) or cron (repeating)"),
    ],
)  # fmt: skip
async def test_bad_times_go_back_to_the_model(
    world: World, arguments: dict[str, Any], error: str
) -> None:
    engine = ScriptedEngine(
        [calls(("schedule_reminder", {"text": "call mom", **arguments})), "Which time?"]
    )
    result = await world.agent(engine).run(turn("remind me"))
    [call] = result.tool_calls
    assert call.status is ToolCallStatus.ERROR
    assert error_of(call.result).startswith(error)
    assert result.reply_parts == ("Which time?",)
    # The model read the error in its next round.
    assert engine.calls[1].messages[-1].content == call.result
    assert await world.core.list_jobs(kind="reminder") == []


async def test_a_retried_turn_makes_one_job(world: World) -> None:
    def attempt(text: str) -> ScriptedEngine:
        return ScriptedEngine(
            [
                calls(("list_reminders", {})),  # a read-only call first does not shift the id
                calls(("schedule_reminder", {"text": "oops", "at": "yesterday"})),  # refused
                calls(("schedule_reminder", {"text": text, "at": "2026-11-24T08:00"})),
                "ok",
            ]
        )

    first = await world.agent(attempt("call mom")).run(turn("remind me", turn_id="t-9"))
    retry = ScriptedEngine(
        [calls(("schedule_reminder", {"text": "call mother", "at": "2026-11-24T08:00"})), "ok"]
    )
    second = await world.agent(retry).run(turn("remind me", turn_id="t-9"))
    made = result_of(first.tool_calls[-1].result)
    again = result_of(second.tool_calls[-1].result)
    assert made["repeat"] is False and again["repeat"] is True
    assert made["id"] == again["id"] == reminder_job_id(CHAT, "t-9", 0)
    [job] = await world.core.list_jobs(kind="reminder")
    assert job.payload["text"] == "call mom"  # the first attempt's words: one job, as made
    # A new turn is a new reminder.
    other = ScriptedEngine(
        [calls(("schedule_reminder", {"text": "call mom", "at": "2026-11-24T08:00"})), "ok"]
    )
    await world.agent(other).run(turn("and again", turn_id="t-10"))
    assert len(await world.core.list_jobs(kind="reminder")) == 2


async def test_without_a_scheduler_the_tools_say_so(world: World) -> None:
    engine = ScriptedEngine(
        [calls(("schedule_reminder", {"text": "x", "cron": "0 9 * * *"})), "ok"]
    )
    agent = world.agent(engine)
    agent.services = world.services(jobs=False)
    [call] = (await agent.run(turn("remind me"))).tool_calls
    assert error_of(call.result) == "reminders are not available here"
    assert UnavailableToolServices().jobs is None


async def test_subscribe_and_unsubscribe_commands_run_without_the_model(world: World) -> None:
    tools = ("schedule_reminder", "subscribe_greetings", "unsubscribe_greetings")
    engine = ScriptedEngine([])  # any model call would fail the test (script exhausted)
    agent = world.agent(engine, tools=tools)
    result = await agent.run(turn(" /Subscribe "))
    assert result.reply_parts == (BUILTIN_TOOLS["subscribe_greetings"].command_reply,)
    assert result.engine_calls == 0 and engine.call_count == 0
    [call] = result.tool_calls
    assert (call.name, call.status) == ("subscribe_greetings", ToolCallStatus.OK)
    assert await world.store.opted_in_chats() == [str(CHAT)]
    result = await agent.run(turn("/unsubscribe", turn_id="turn-2"))
    assert result.reply_parts == (BUILTIN_TOOLS["unsubscribe_greetings"].command_reply,)
    assert await world.store.opted_in_chats() == []
    # The model can call them too ("please stop the morning messages").
    engine = ScriptedEngine([calls(("subscribe_greetings", {})), "You're in."])
    result = await world.agent(engine, tools=tools).run(turn("send me greetings", turn_id="t3"))
    assert result_of(result.tool_calls[0].result) == {"subscribed": True, "changed": True}
    assert await world.store.opted_in_chats(CHAT.phone_number_id) == [str(CHAT)]


async def test_a_command_of_a_tool_the_agent_lacks_goes_to_the_model(world: World) -> None:
    engine = ScriptedEngine(["I can't do that."])
    result = await world.agent(engine).run(turn("/subscribe"))
    assert result.reply_parts == ("I can't do that.",) and engine.call_count == 1
    assert await world.store.opted_in_chats() == []


async def test_first_tool_choice_required_asks_the_engine_for_a_call(world: World) -> None:
    engine = ScriptedEngine([calls(("list_reminders", {})), "none yet"])
    agent = world.agent(engine, first_tool_choice="required")
    await agent.run(turn("what reminders do I have?"))
    assert [c.tool_choice for c in engine.calls] == ["required", None]
