"""The reminder tool driven by a real model: SmolLM2-135M on vLLM (in this process), through the
agent's real tool loop, with `first_tool_choice: required` so that vLLM constrains the first reply
to a valid call of the offered tool. The call runs against a real `SchedulerCore` over a real
DuckDB store, and the job it creates is exactly what the model's arguments say.

A 135M model cannot be trusted with date arithmetic (greedy SmolLM2 answers a repeating
`* * * * *` here), so the test does not assert which time it picked: it asserts that the model's
output became a valid `schedule_reminder` call (the patterns of `at` and `cron` are in the schema
vLLM decodes under) and that the call created exactly the job its arguments describe.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from whatsray.agents import Agent, AgentTurnRequest, parse_agents_config
from whatsray.inbox import AppendResult
from whatsray.llm.vllm_engine import VLLMEngine, VLLMOptions
from whatsray.scheduling import SchedulerCore
from whatsray.session.turns import ToolCallStatus
from whatsray.store import Store
from whatsray.tools import PlatformToolServices
from whatsray.whatsapp.events import ChatKey, Event

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHAT = ChatKey(phone_number_id="106540352242922", user="15551234567")
T0 = datetime(2026, 11, 22, 13, 0, tzinfo=UTC).timestamp()
ZONE = "Europe/Berlin"


class NoSink:
    async def append(self, events: Sequence[Event]) -> AppendResult:
        raise AssertionError("no reminder is due during this test")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(smollm2_dir: Path) -> AsyncIterator[VLLMEngine]:
    engine = VLLMEngine(VLLMOptions(model=str(smollm2_dir), max_num_seqs=4, max_tokens=200))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


async def test_a_real_model_schedules_a_reminder(engine: VLLMEngine, tmp_path: Path) -> None:
    config = parse_agents_config(
        {
            "engines": {"vllm": {"engine": "vllm"}},
            "router": {"default_agent": "assistant"},
            "agents": [
                {
                    "name": "assistant",
                    "description": "d",
                    "system_prompt": "You set reminders for the user with schedule_reminder.",
                    "engine": "vllm",
                    "max_tokens": 200,
                    "temperature": 0,
                    "tools": ["schedule_reminder"],
                    "first_tool_choice": "required",
                    "max_tool_steps": 1,
                }
            ],
        }
    )
    clock = lambda: T0  # noqa: E731
    async with Store(tmp_path / "s.duckdb", now=clock) as store:
        core = SchedulerCore(store, NoSink(), default_timezone=ZONE, now=clock, timers=False)
        await core.start()
        services = PlatformToolServices(
            store,
            lambda _: None,
            jobs=core,
            default_timezone=ZONE,  # type: ignore[arg-type,return-value]
        )
        agent = Agent(config.agent("assistant"), engine, services=services, now=clock)
        request = AgentTurnRequest(
            "turn-1", str(CHAT), ("Remind me tomorrow at 9:00 to call mom.",)
        )
        result = await agent.run(request)

        assert result.tool_calls, result.reply_parts
        call = result.tool_calls[0]
        assert call.name == "schedule_reminder", result  # the constrained first reply
        arguments = json.loads(call.arguments)
        assert isinstance(arguments.get("text"), str) and arguments["text"].strip()
        jobs = await core.list_jobs(kind="reminder", chat=str(CHAT))
        print("model called", call.arguments, "->", call.result)  # what it did, for the log
        # The schema made the call valid, so it creates exactly the job its arguments describe.
        assert call.status is ToolCallStatus.OK, call.result
        [job] = jobs
        out = json.loads(call.result or "{}")
        assert out["id"] == job.id and job.payload["text"] == arguments["text"].strip()
        assert job.chat == str(CHAT) and job.timezone == (arguments.get("timezone") or ZONE)
        assert job.trigger.model_dump(exclude={"type"}) in (
            {"expression": arguments.get("cron")},
            {"run_at": datetime.fromisoformat(arguments.get("at") or "2000-01-01")},
        )
        assert result.reply_parts  # the closing reply (without tools) reached the user
        await core.close()
