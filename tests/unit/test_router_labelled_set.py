"""The labelled routing set (tests/data/router_labelled.yaml) stays usable: big enough, only
known labels, every agent covered, no duplicates, and it loads with its agents file."""

from __future__ import annotations

import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from whatsray.agents import AgentsConfig, Router, RouteRequest, load_agents_config
from whatsray.llm import ScriptedEngine

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
MIN_MESSAGES = 60


@pytest.fixture(scope="module")
def labelled() -> dict[str, Any]:
    data = yaml.safe_load((DATA / "router_labelled.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def agents() -> AgentsConfig:
    return load_agents_config(DATA / "router_agents.yaml")


def normalized(text: str) -> str:
    """What makes two messages the same for the set: case, spacing and Unicode form."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def test_the_header_names_a_version_and_the_agents_file(labelled: dict[str, Any]) -> None:
    assert isinstance(labelled["version"], int)
    assert labelled["notes"].strip()
    assert (ROOT / labelled["agents_file"]).resolve() == (DATA / "router_agents.yaml").resolve()


def test_enough_well_formed_messages(labelled: dict[str, Any]) -> None:
    messages = labelled["messages"]
    assert len(messages) >= MIN_MESSAGES
    for message in messages:
        assert set(message) <= {"text", "agent", "lang"}, message
        assert isinstance(message["text"], str) and message["text"].strip(), message
        assert message.get("lang", "en") in ("en", "de"), message


def test_labels_are_known_agents_and_cover_every_agent(
    labelled: dict[str, Any], agents: AgentsConfig
) -> None:
    counts = Counter(m["agent"] for m in labelled["messages"])
    assert set(counts) == set(agents.names) == {"assistant", "faq", "support"}
    # No agent is a token presence: each has at least a fifth of the set.
    assert min(counts.values()) >= len(labelled["messages"]) // 5


def test_no_duplicate_messages(labelled: dict[str, Any]) -> None:
    texts = Counter(normalized(m["text"]) for m in labelled["messages"])
    assert [text for text, count in texts.items() if count > 1] == []


def test_the_agents_file_describes_the_three_agents(agents: AgentsConfig) -> None:
    assert agents.router.default_agent == "assistant"
    assert agents.router.classifier and agents.router.classifier_engine == "local"
    assert agents.engines["local"].engine == "llamacpp"
    assert "/support" in agents.agent("support").routing.commands
    for name in agents.names:
        assert len(agents.agent(name).description.split()) >= 10, name


async def test_every_message_routes_to_a_known_agent_without_the_llm(
    labelled: dict[str, Any], agents: AgentsConfig
) -> None:
    """The whole set through the rules, the trained stage and the fallback (classifier off):
    always an agent."""
    router = Router(
        agents.model_copy(
            update={"router": agents.router.model_copy(update={"classifier": False})}
        ),
        ScriptedEngine([]),
    )
    for message in labelled["messages"]:
        decision = await router.route(RouteRequest("chat", (message["text"],)))
        assert decision.agent in agents.names
        assert decision.reason in ("command", "keyword", "pattern", "trained", "fallback")
