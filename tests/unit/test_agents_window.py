"""Agents see how much of the user's 24-hour window is left, in their system prompt."""

from __future__ import annotations

from typing import Any

from whatsray.agents import Agent, AgentTurnRequest, parse_agents_config
from whatsray.agents.config import AgentSpec
from whatsray.llm import ScriptedEngine

CHAT = "106540352242922:16505551234"
NOW = 1_750_000_000.0


def spec() -> AgentSpec:
    data: dict[str, Any] = {
        "engines": {"test": {"engine": "scripted"}},
        "router": {"default_agent": "assistant"},
        "agents": [
            {
                "name": "assistant",
                "description": "d",
                "system_prompt": "You are helpful.",
                "engine": "test",
            }
        ],
    }
    return parse_agents_config(data).agent("assistant")


async def system_prompt_for(last_inbound_at: float | None) -> str:
    engine = ScriptedEngine(["ok"])
    agent = Agent(spec(), engine, now=lambda: NOW)
    request = AgentTurnRequest("t1", CHAT, ("hi",), last_inbound_at=last_inbound_at)
    await agent.run(request)
    [call] = engine.calls
    system = call.messages[0]
    assert system.role == "system"
    return str(system.content)


async def test_the_time_left_in_the_window_is_in_the_system_prompt() -> None:
    prompt = await system_prompt_for(NOW - (20 * 3600 + 48 * 60))
    assert prompt == (
        "You are helpful.\n\nThe user's 24-hour WhatsApp window closes in 3 h 12 min."
    )


async def test_a_closed_window_says_only_templates_reach_the_user() -> None:
    prompt = await system_prompt_for(NOW - 30 * 3600)
    assert prompt.startswith("You are helpful.\n\nThe user's 24-hour WhatsApp window is closed")
    assert "only approved templates" in prompt


async def test_without_a_last_inbound_time_nothing_is_said() -> None:
    assert await system_prompt_for(None) == "You are helpful."


def test_from_events_carries_the_last_inbound_time() -> None:
    request = AgentTurnRequest.from_events("t1", CHAT, (), last_inbound_at=NOW)
    assert request.last_inbound_at == NOW
