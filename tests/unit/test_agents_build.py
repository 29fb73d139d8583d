"""build_runtime: engines built once per distinct spec, shared, closed once; a turn end to end."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from whatsray.agents import (
    AgentOutcome,
    AgentTurnRequest,
    RouteRequest,
    build_runtime,
    load_agents_config,
    parse_agents_config,
)
from whatsray.llm import ChatEngine, ChatMessage, KeywordRules, LLMUnavailable, ScriptedEngine

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "agents.yaml"
CHAT = "106540352242922:16505551234"


async def is_closed(engine: ScriptedEngine) -> bool:
    try:
        await engine.chat([ChatMessage.user("ping")])
    except LLMUnavailable:
        return True
    return False


class Factory:
    """Builds scripted engines in place of whatever the spec names, and remembers the specs."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.specs: list[dict[str, Any]] = []
        self.engines: list[ScriptedEngine] = []
        self.fail_on = fail_on

    def __call__(self, spec: Mapping[str, Any]) -> ChatEngine:
        self.specs.append(dict(spec))
        if self.fail_on == len(self.specs):
            raise ValueError("cannot build")
        rules = KeywordRules([("open", "We open at 9."), ("route", "faq")], default="faq")
        engine = ScriptedEngine(responder=rules, name=str(spec["engine"]))
        self.engines.append(engine)
        return engine


async def test_shipped_config_shares_one_local_engine() -> None:
    factory = Factory()
    runtime = await build_runtime(load_agents_config(SHIPPED), engine_factory=factory)
    # assistant, faq, support and the classifier all name `local`: one engine
    assert factory.specs == [{"engine": "llamacpp"}]
    assert set(runtime.agents) == {"assistant", "faq", "support"}
    assert runtime.agents["faq"].engine is runtime.agents["assistant"].engine
    await runtime.close()
    assert [await is_closed(e) for e in factory.engines] == [True]


async def test_a_turn_end_to_end_with_the_shipped_config() -> None:
    factory = Factory()
    shipped = load_agents_config(SHIPPED)
    # A threshold no trained guess reaches, so that the classifier is asked below.
    router = shipped.router.model_copy(update={"trained_threshold": 0.999})
    config = shipped.model_copy(update={"router": router})
    runtime = await build_runtime(config, engine_factory=factory)
    decision = await runtime.router.route(RouteRequest(CHAT, ("when do you open on saturday?",)))
    assert (decision.agent, decision.reason) == ("faq", "keyword")
    assert decision.agent is not None
    result = await runtime.agents[decision.agent].run(
        AgentTurnRequest("t1", CHAT, ("when do you open on saturday?",))
    )
    assert (result.reply_parts, result.outcome) == (("We open at 9.",), AgentOutcome.OK)
    assert result.knowledge_ids[0] == "when-are-you-open"
    # no rule matches, the trained stage is unsure: the classifier (the scripted engine) says faq
    classified = await runtime.router.route(RouteRequest(CHAT, ("route me",)))
    assert (classified.agent, classified.reason) == ("faq", "classifier")
    assert classified.confidence is not None and classified.confidence < 0.999
    await runtime.close()


async def test_model_overrides_build_separate_engines_and_failures_close_the_built() -> None:
    data = {
        "engines": {
            "a": {"engine": "scripted", "mode": "echo"},
            "b": {"engine": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "small"},
        },
        "router": {"default_agent": "one", "classifier_engine": "a"},
        "agents": [
            {"name": "one", "description": "d", "system_prompt": "s", "engine": "b"},
            {
                "name": "two",
                "description": "d",
                "system_prompt": "s",
                "engine": "b",
                "model": "big",
            },
            {"name": "three", "description": "d", "system_prompt": "s", "engine": "a"},
        ],
    }
    config = parse_agents_config(data)
    factory = Factory()
    runtime = await build_runtime(config, engine_factory=factory)
    assert [s.get("model") for s in factory.specs] == ["small", "big", None]
    assert len(runtime.engines) == 3
    assert not await is_closed(factory.engines[2])
    await runtime.close()
    assert [await is_closed(e) for e in factory.engines] == [True, True, True]

    failing = Factory(fail_on=2)
    with pytest.raises(ValueError, match="cannot build"):
        await build_runtime(config, engine_factory=failing)
    assert len(failing.engines) == 1 and await is_closed(failing.engines[0])
