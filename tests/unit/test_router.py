"""The Router: every rule kind, their precedence, the classifier, and the deterministic fallback."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.metrics import MetricsProbe
from whatsray.agents import AgentsConfig, Router, RouteRequest, load_agents_config
from whatsray.agents.config import parse_agents_config
from whatsray.agents.router import (
    classifier_schema,
    parse_classifier_answer,
    parse_structured_answer,
)
from whatsray.llm import (
    ChatMessage,
    ChatReply,
    LLMBadResponse,
    LLMUnavailable,
    ScriptedEngine,
    ToolSpec,
)
from whatsray.llm.protocol import ToolChoice
from whatsray.whatsapp.events import MessageEvent, MessageType
from whatsray.whatsapp.message_content import (
    ButtonContent,
    ImageContent,
    InteractiveContent,
    TextContent,
)

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "agents.yaml"
CHAT = "106540352242922:16505551234"


def config(**router: Any) -> AgentsConfig:
    """Three agents with one rule of each kind, and a classifier engine."""
    data = {
        "engines": {"test": {"engine": "scripted"}},
        "router": {"default_agent": "assistant", "classifier_timeout_s": 0.05, **router},
        "agents": [
            {
                "name": "assistant",
                "description": "Small talk and general help.",
                "system_prompt": "s",
                "engine": "test",
                "routing": {"commands": ["/help"], "patterns": [r"(?i)^\s*(hi|hello)\b"]},
            },
            {
                "name": "faq",
                "description": "Opening hours, prices and delivery of the shop.",
                "system_prompt": "s",
                "engine": "test",
                "routing": {
                    "commands": ["/faq"],
                    "keywords": ["opening hours", "price", "delivery", "order"],
                    "interactive_prefixes": ["faq:"],
                },
            },
            {
                "name": "orders",
                "description": "Tracking and changing existing orders.",
                "system_prompt": "s",
                "engine": "test",
                "routing": {
                    "keywords": ["order", "tracking"],
                    "patterns": [r"#\d{5}\b"],
                    "interactive_prefixes": ["order:"],
                },
            },
        ],
    }
    return parse_agents_config(data)


def request(*texts: str, **kwargs: Any) -> RouteRequest:
    return RouteRequest(CHAT, texts, **kwargs)


class HangingEngine:
    """An engine that ignores its timeout and never answers: only the router's own timeout helps."""

    name = "hanging"

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[ToolSpec] | None = None,
        tool_choice: ToolChoice | None = None,
        response_schema: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> ChatReply:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        return None


@pytest.fixture
def no_classifier() -> ScriptedEngine:
    """Any call fails the test: rules must decide without the LLM."""
    return ScriptedEngine([])


# --- rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "agent", "detail"),
    [
        ("/faq", "faq", "/faq"),
        ("/FAQ when do you open?", "faq", "/faq"),
        ("/help", "assistant", "/help"),
        ("/agent orders", "orders", "/agent orders"),
        ("  /Agent FAQ  ", "faq", "/agent faq"),
    ],
)
async def test_commands(no_classifier: ScriptedEngine, text: str, agent: str, detail: str) -> None:
    decision = await Router(config(), no_classifier).route(request(text))
    assert (decision.agent, decision.reason, decision.detail) == (agent, "command", detail)
    assert no_classifier.call_count == 0


async def test_unknown_commands_fall_through_to_other_rules(no_classifier: ScriptedEngine) -> None:
    router = Router(config(), no_classifier)
    decision = await router.route(request("/agent nobody what is the price?"))
    assert (decision.agent, decision.reason) == ("faq", "keyword")
    decision = await router.route(request("/dance", current_agent="orders", idle_s=5))
    assert (decision.agent, decision.reason) == ("orders", "sticky")


async def test_newest_command_wins_in_a_coalesced_turn(no_classifier: ScriptedEngine) -> None:
    decision = await Router(config(), no_classifier).route(request("/faq", "/agent orders"))
    assert decision.agent == "orders"


async def test_interactive_reply_id_prefix(no_classifier: ScriptedEngine) -> None:
    router = Router(config(), no_classifier)
    decision = await router.route(request("Track it", interactive_ids=("order:123",)))
    assert (decision.agent, decision.reason, decision.detail) == (
        "orders",
        "interactive",
        "order:123",
    )


async def test_keywords_whole_words_any_case(no_classifier: ScriptedEngine) -> None:
    router = Router(config(), no_classifier)
    decision = await router.route(request("What are your Opening  Hours?"))
    assert (decision.agent, decision.reason, decision.detail) == ("faq", "keyword", "opening hours")
    # "prices" is not the keyword "price", "ordering" is not "order": no keyword decides
    decision = await router.route(request("pricey ordering", current_agent="assistant", idle_s=1))
    assert decision.reason == "sticky"


async def test_most_keywords_win_and_ties_go_to_the_current_agent(
    no_classifier: ScriptedEngine,
) -> None:
    router = Router(config(), no_classifier)
    # faq: order, price, delivery (3) vs orders: order (1)
    decision = await router.route(request("order delivery price"))
    assert (decision.agent, decision.reason) == ("faq", "keyword")
    # "order" alone ties 1-1: first declared wins, unless the chat is with the other one
    assert (await router.route(request("my order"))).agent == "faq"
    tied = await router.route(request("my order", current_agent="orders", idle_s=1))
    assert (tied.agent, tied.reason) == ("orders", "keyword")


async def test_patterns(no_classifier: ScriptedEngine) -> None:
    router = Router(config(), no_classifier)
    decision = await router.route(request("where is #12345?"))
    assert (decision.agent, decision.reason, decision.detail) == ("orders", "pattern", r"#\d{5}\b")
    assert (await router.route(request("Hello there"))).agent == "assistant"


async def test_sticky_until_the_idle_gap(no_classifier: ScriptedEngine) -> None:
    router = Router(config(sticky_idle_s=600, classifier=False), no_classifier)
    decision = await router.route(request("and then?", current_agent="orders", idle_s=599))
    assert (decision.agent, decision.reason) == ("orders", "sticky")
    # an unknown gap (no earlier turn) keeps the agent too
    assert (await router.route(request("x", current_agent="orders"))).reason == "sticky"
    expired = await router.route(request("and then?", current_agent="orders", idle_s=600))
    assert (expired.agent, expired.reason) == ("assistant", "fallback")


async def test_sticky_ignores_an_agent_no_longer_configured(no_classifier: ScriptedEngine) -> None:
    router = Router(config(classifier=False), no_classifier)
    decision = await router.route(request("hm", current_agent="retired", idle_s=1))
    assert (decision.agent, decision.reason) == ("assistant", "fallback")


async def test_command_beats_sticky_and_rules_move_the_chat(no_classifier: ScriptedEngine) -> None:
    router = Router(config(), no_classifier)
    assert (await router.route(request("/faq", current_agent="orders", idle_s=1))).agent == "faq"
    moved = await router.route(request("what's the price", current_agent="orders", idle_s=1))
    assert (moved.agent, moved.reason) == ("faq", "keyword")


async def test_command_beats_interactive_and_keywords(no_classifier: ScriptedEngine) -> None:
    router = Router(config(), no_classifier)
    decision = await router.route(
        request("/help", "order delivery price", interactive_ids=("faq:hours",))
    )
    assert (decision.agent, decision.reason) == ("assistant", "command")
    decision = await router.route(request("order delivery price", interactive_ids=("order:1",)))
    assert (decision.agent, decision.reason) == ("orders", "interactive")


async def test_handoff_beats_everything(no_classifier: ScriptedEngine) -> None:
    router = Router(config(), no_classifier)
    decision = await router.route(
        request("/faq", interactive_ids=("faq:x",), current_agent="faq", handoff=True, idle_s=1)
    )
    assert (decision.agent, decision.reason) == (None, "handoff")
    assert no_classifier.call_count == 0


# --- classifier ------------------------------------------------------------------------------


async def test_classifier_asks_for_a_structured_choice() -> None:
    engine = ScriptedEngine(['{"agent": "orders"}'])
    decision = await Router(config(), engine).route(request("I never got my parcel"))
    assert (decision.agent, decision.reason, decision.detail, decision.classifier_answer) == (
        "orders",
        "classifier",
        "json",
        '{"agent": "orders"}',
    )
    assert decision.classifier_latency_ms is not None and decision.classifier_latency_ms >= 0
    call = engine.calls[0]
    system, user = call.messages
    assert system.role == "system" and user.role == "user"
    assert "- faq: Opening hours, prices and delivery of the shop." in system.content
    assert "- orders: Tracking and changing existing orders." in system.content
    assert '{"agent": "<name>"}' in system.content
    assert user.content == "I never got my parcel"
    assert call.temperature == 0.0 and call.timeout_s == 0.05
    assert call.max_tokens is not None and call.max_tokens >= 16  # room for the whole JSON
    assert call.response_schema == {
        "title": "route",
        "type": "object",
        "properties": {"agent": {"type": "string", "enum": ["assistant", "faq", "orders"]}},
        "required": ["agent"],
        "additionalProperties": False,
    }
    assert call.tools == () and call.tool_choice is None


def test_classifier_schema_lists_the_names_in_order() -> None:
    schema = classifier_schema(("b", "a"))
    assert schema["properties"]["agent"]["enum"] == ["b", "a"]
    assert schema["required"] == ["agent"] and schema["additionalProperties"] is False


@pytest.mark.parametrize(
    "answer",
    [
        '{"agent": "faq"}',
        '{ "agent" : "faq" }\n',
        '{"agent": " FAQ "}',
        '```json\n{"agent": "faq"}\n```',
        '{"agent": "faq", "confidence": 0.4}',  # extra keys: an engine that ignored the schema
    ],
)
async def test_structured_answers_are_read_as_json(answer: str) -> None:
    decision = await Router(config(), ScriptedEngine([answer])).route(request("hmm"))
    assert (decision.agent, decision.reason, decision.detail) == ("faq", "classifier", "json")


@pytest.mark.parametrize(
    "answer", ["faq", " FAQ.", "`faq`", "Agent: faq", "I pick faq for this.", '{"agent": "faq"']
)
async def test_text_answers_are_parsed_tolerantly(answer: str) -> None:
    """Engines without constrained decoding may answer text (or cut JSON short)."""
    decision = await Router(config(), ScriptedEngine([answer])).route(request("hmm"))
    assert (decision.agent, decision.reason, decision.detail) == ("faq", "classifier", "text")


@pytest.mark.parametrize(
    "answer",
    [
        "pizza",
        "",
        "faq or orders",
        "faqs",
        "assistant-ish",
        '{"agent": "pizza"}',  # JSON naming no agent
        '{"agent": "pizza", "note": "faq"}',  # a name elsewhere in the JSON does not count
        '{"agents": "faq"}',
        '{"agent": ["faq"]}',
        '{"agent": null}',
        "{}",
    ],
)
async def test_invalid_classifier_answer_falls_back(answer: str, recorded: MetricsProbe) -> None:
    router = Router(config(), ScriptedEngine([answer]))
    decision = await router.route(request("hmm"))
    assert (decision.agent, decision.reason, decision.fallback_cause) == (
        "assistant",
        "fallback",
        "invalid_answer",
    )
    assert decision.classifier_answer == answer
    assert decision.classifier_latency_ms is not None
    fallback = {"reason": "fallback", "fallback_cause": "invalid_answer"}
    assert recorded.value("whatsray_routes_total", **fallback) == 1


def test_parse_structured_answer() -> None:
    names = ("assistant", "faq")
    assert parse_structured_answer('{"agent": "faq"}', names) == ("faq", "json")
    assert parse_structured_answer('{"agent": "orders"}', names) == (None, "json")
    assert parse_structured_answer("assistant", names) == ("assistant", "text")
    assert parse_structured_answer("[1, 2]", names) == (None, "text")
    assert parse_structured_answer('"faq"', names) == ("faq", "text")  # a JSON string is text


@pytest.mark.parametrize(
    "error", [LLMUnavailable("down"), LLMBadResponse("garbage"), RuntimeError("bug")]
)
async def test_failed_classifier_falls_back(error: Exception) -> None:
    engine = ScriptedEngine(["faq"], fail_on={1: error})
    decision = await Router(config(), engine).route(request("hmm"))
    assert (decision.agent, decision.reason, decision.fallback_cause) == (
        "assistant",
        "fallback",
        "error",
    )
    assert decision.detail is not None and type(error).__name__ in decision.detail


async def test_late_classifier_falls_back_even_if_the_engine_ignores_its_timeout() -> None:
    engine = HangingEngine()
    decision = await Router(config(), engine).route(request("hmm"))
    assert engine.started.is_set()
    assert (decision.agent, decision.fallback_cause) == ("assistant", "timeout")


async def test_engine_timeout_error_counts_as_late() -> None:
    never = asyncio.Event()
    engine = ScriptedEngine(["faq"], delay_on={1: never})  # raises LLMTimeout at timeout_s
    decision = await Router(config(), engine).route(request("hmm"))
    assert (decision.agent, decision.fallback_cause) == ("assistant", "timeout")


async def test_classifier_off_or_without_text_is_not_called() -> None:
    engine = ScriptedEngine([])
    off = await Router(config(classifier=False), engine).route(request("hmm"))
    assert (off.agent, off.reason, off.fallback_cause) == ("assistant", "fallback", "disabled")
    no_text = await Router(config(), engine).route(request())
    assert (no_text.reason, no_text.fallback_cause) == ("fallback", "no_text")
    assert engine.call_count == 0


async def test_counts_record_each_path(recorded: MetricsProbe) -> None:
    router = Router(config(), ScriptedEngine(['{"agent": "faq"}', '{"agent": "pizza"}']))
    await router.route(request("/faq"))
    await router.route(request("hmm"))
    await router.route(request("hmm"))
    await router.route(request("x", handoff=True))
    routes = "whatsray_routes_total"
    assert recorded.value(routes, agent="faq", reason="command", fallback_cause="") == 1
    assert recorded.value(routes, agent="faq", reason="classifier") == 1
    fallback = {"agent": "assistant", "fallback_cause": "invalid_answer"}
    assert recorded.value(routes, reason="fallback", **fallback) == 1
    assert recorded.value(routes, agent="none", reason="handoff") == 1
    assert recorded.value(routes) == 4


async def test_rules_and_classify_can_be_asked_apart(recorded: MetricsProbe) -> None:
    """What the accuracy benchmark uses: `route` is `rules(...) or classify(...)`."""
    engine = ScriptedEngine(['{"agent": "orders"}'])
    router = Router(config(), engine)
    rule = router.rules(request("what's the price?"))
    assert rule is not None and (rule.agent, rule.reason) == ("faq", "keyword")
    assert router.rules(request("I never got my parcel")) is None
    decided = await router.classify(request("what's the price?"))  # rules skipped
    assert (decided.agent, decided.reason) == ("orders", "classifier")
    assert engine.call_count == 1
    assert recorded.value("whatsray_routes_total") == 0  # only route() counts


def test_parse_classifier_answer() -> None:
    names = ("assistant", "faq")
    assert parse_classifier_answer("FAQ", names) == "faq"
    assert parse_classifier_answer("**assistant**", names) == "assistant"
    assert parse_classifier_answer("faq, assistant", names) is None
    assert parse_classifier_answer("faqs", names) is None


# --- requests from events, and the shipped config -----------------------------------------------


def event(content: Any, type_: MessageType) -> MessageEvent:
    return MessageEvent(idempotency_key=f"k-{id(content)}", type=type_, content=content)


def test_route_request_from_events() -> None:
    events = [
        event(TextContent(body="hi"), MessageType.TEXT),
        event(ImageContent(), MessageType.IMAGE),  # no caption: no text
        event(
            InteractiveContent(reply_id="faq:hours", title="Opening hours"), MessageType.INTERACTIVE
        ),
        event(ButtonContent(payload="order:9", text="Track"), MessageType.BUTTON),
    ]
    req = RouteRequest.from_events(CHAT, events, current_agent="faq", handoff=False, idle_s=3.0)
    assert req.texts == ("hi", "Opening hours", "Track")
    assert req.interactive_ids == ("faq:hours", "order:9")
    assert (req.current_agent, req.handoff, req.idle_s) == ("faq", False, 3.0)


async def test_shipped_config_routes_without_the_llm() -> None:
    router = Router(load_agents_config(SHIPPED), ScriptedEngine([]))
    assert (await router.route(request("What are your opening hours?"))).agent == "faq"
    assert (await router.route(request("/help"))).agent == "assistant"
    assert (await router.route(request("hello!"))).agent == "assistant"
    assert (await router.route(request("x", interactive_ids=("faq:delivery",)))).agent == "faq"


async def test_requests_and_decisions_survive_pickling() -> None:
    req = request("hmm", interactive_ids=("faq:x",), current_agent="faq", idle_s=2.0)
    assert pickle.loads(pickle.dumps(req)) == req
    decision = await Router(config(), ScriptedEngine(["pizza"])).route(request("hmm"))
    assert pickle.loads(pickle.dumps(decision)) == decision
