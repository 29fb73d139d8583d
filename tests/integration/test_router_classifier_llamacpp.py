"""The router's classifier with the real llama.cpp engine (bundled SmolLM2-135M-Instruct).

A sample of the labelled routing set goes through `Router.classify`. What constrained decoding
guarantees is checked: every answer is a JSON instance of the classifier's schema, so every
decision names a known agent. Accuracy is not asserted (a 135M model routes poorly; the number
is measured by benchmarks/router_accuracy.py and reported in docs/router.md).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from whatsray.agents import AgentsConfig, Router, RouteRequest, load_agents_config
from whatsray.agents.router import classifier_schema
from whatsray.llm import ChatEngine, ChatMessage, build_engine

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE = 10


def labelled_sample() -> list[dict[str, Any]]:
    messages = yaml.safe_load((DATA / "router_labelled.yaml").read_text("utf-8"))["messages"]
    # A message without words (an emoji alone) is the fallback's, never the classifier's.
    messages = [m for m in messages if any(c.isalnum() for c in m["text"])]
    step = len(messages) // SAMPLE
    return [messages[i * step] for i in range(SAMPLE)]  # spread over all three agents


@pytest.fixture(scope="module")
def config() -> AgentsConfig:
    loaded = load_agents_config(DATA / "router_agents.yaml")
    # A generous timeout: the point is the answers' shape, and the CPU may be shared.
    router = loaded.router.model_copy(update={"classifier_timeout_s": 120.0})
    return loaded.model_copy(update={"router": router})


@pytest.fixture
async def engine(config: AgentsConfig) -> AsyncIterator[ChatEngine]:
    spec = config.engines[config.router.classifier_engine or "local"]
    assert spec.engine == "llamacpp"
    built = build_engine(spec.as_dict())
    yield built
    await built.close()


def matches_schema(answer: str, names: tuple[str, ...]) -> bool:
    """The classifier schema by hand: an object with exactly `agent`, one of `names`."""
    value = json.loads(answer)
    return isinstance(value, dict) and set(value) == {"agent"} and value["agent"] in names


async def test_the_classifier_answers_a_known_agent_as_schema_json(
    config: AgentsConfig, engine: ChatEngine
) -> None:
    router = Router(config, engine)
    sample = labelled_sample()
    assert {m["agent"] for m in sample} == set(config.names)
    decisions = [await router.classify(RouteRequest("chat", (m["text"],))) for m in sample]
    for message, decision in zip(sample, decisions, strict=True):
        assert decision.agent in config.names, message
        assert (decision.reason, decision.detail) == ("classifier", "json"), (message, decision)
        assert decision.classifier_answer is not None
        assert matches_schema(decision.classifier_answer, config.names), decision
        assert decision.classifier_latency_ms is not None


async def test_a_late_classifier_falls_back_and_the_engine_keeps_working(
    config: AgentsConfig, engine: ChatEngine
) -> None:
    """A timeout in the middle of a constrained generation: the fallback decides, and the
    engine (which lets that generation finish) answers the next request."""
    hurried = config.model_copy(
        update={"router": config.router.model_copy(update={"classifier_timeout_s": 0.001})}
    )
    late = await Router(hurried, engine).classify(RouteRequest("chat", ("where is my order?",)))
    assert (late.agent, late.reason, late.fallback_cause) == ("assistant", "fallback", "timeout")
    decision = await Router(config, engine).classify(RouteRequest("chat", ("hi there!",)))
    assert decision.reason == "classifier"
    assert decision.classifier_answer is not None
    assert matches_schema(decision.classifier_answer, config.names)


async def test_the_schema_holds_for_a_prompt_that_invites_prose(engine: ChatEngine) -> None:
    names = ("assistant", "faq", "support")
    reply = await engine.chat(
        [ChatMessage.user("Write a long poem about bikes.")],
        max_tokens=32,
        temperature=0.0,
        response_schema=classifier_schema(names),
    )
    assert matches_schema(reply.content, names), reply.content
