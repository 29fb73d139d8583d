"""The router's trained stage (docs/router.md): learnt from the agents' examples and descriptions,
it routes its own examples back, German and misspelt messages too, steps aside below its
threshold, comes after the rules, is deterministic, and its config is validated. The guard test
keeps the labelled routing set out of every shipped agents file's examples."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.metrics import MetricsProbe
from whatsray.agents import AgentsConfig, Router, RouteRequest, load_agents_config
from whatsray.agents.config import AgentsConfigError, parse_agents_config
from whatsray.agents.examples import example_key, normalise
from whatsray.agents.intent_model import train_intent_model
from whatsray.llm import ScriptedEngine
from whatsray.pipeline.routing import RulesFirstRouter

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "configs" / "agents.yaml"
BENCHMARKED = ROOT / "tests" / "data" / "router_agents.yaml"
LABELLED = ROOT / "tests" / "data" / "router_labelled.yaml"
CHAT = "106540352242922:16505551234"


def request(*texts: str, **kwargs: Any) -> RouteRequest:
    return RouteRequest(CHAT, texts, **kwargs)


@pytest.fixture(scope="module")
def shipped() -> AgentsConfig:
    return load_agents_config(SHIPPED)


def without_classifier(config: AgentsConfig, **router: Any) -> AgentsConfig:
    spec = config.router.model_copy(update={"classifier": False, **router})
    return config.model_copy(update={"router": spec})


def small(**router: Any) -> dict[str, Any]:
    """Two agents with a few examples each, and a rule for one of them."""
    return {
        "engines": {"test": {"engine": "scripted"}},
        "router": {"default_agent": "chat", "classifier_timeout_s": 0.05, **router},
        "agents": [
            {
                "name": "chat",
                "description": "Greetings and small talk.",
                "system_prompt": "s",
                "engine": "test",
                "routing": {"keywords": ["weather"]},
                "examples": ["hello there", "thanks a lot", "good night", "how are you"],
            },
            {
                "name": "orders",
                "description": "Problems with an order: late, missing or wrong.",
                "system_prompt": "s",
                "engine": "test",
                "examples": [
                    "my order is late",
                    "the parcel never arrived",
                    "wrong item in my order",
                    "where is my package",
                ],
            },
        ],
    }


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(AgentsConfigError) as caught:
        parse_agents_config(data)
    return str(caught.value)


# --- the shipped examples ---------------------------------------------------------------------


def test_the_trained_stage_routes_its_own_examples_back(shipped: AgentsConfig) -> None:
    router = Router(without_classifier(shipped))
    assert router.intent_model is not None
    wrong = []
    for agent in shipped.agents:
        assert 25 <= len(agent.examples) <= 60, agent.name
        for example in agent.examples:
            guess = router.trained(request(example))
            if guess is None or guess.agent != agent.name:
                wrong.append((agent.name, example, guess))
    assert wrong == []


@pytest.mark.parametrize(
    ("text", "agent"),
    [
        # German, written for this test (not in the examples, not in the labelled set).
        ("Bis wann ist die Werkstatt heute geöffnet?", "faq"),
        ("Was kostet bei euch ein neuer Fahrradsattel?", "faq"),
        ("Verleiht ihr auch Kinderräder?", "faq"),
        ("Meine Lieferung ist seit zehn Tagen überfällig", "support"),
        ("Nach der Reparatur klappert das Rad schlimmer als vorher", "support"),
        ("Ich möchte bitte mit jemandem aus dem Team sprechen", "support"),
        ("Vielen Dank, bis zum nächsten Mal!", "assistant"),
        ("Kannst du mich am Freitag an den Termin erinnern?", "assistant"),
        # Typos and chat spelling.
        ("wher is ur shop", "faq"),
        ("do u have cargo bikse for sale", "faq"),
        ("how much 2 rent a bike for a week", "faq"),
        ("my packge never arived, ordered 3 weeks ago", "support"),
        ("the brakes u fixed are makng noise again", "support"),
        ("thnx a lot, ur great", "assistant"),
        ("wat r u", "assistant"),
    ],
)
def test_german_and_misspelt_messages_reach_the_right_agent(
    shipped: AgentsConfig, text: str, agent: str
) -> None:
    router = Router(without_classifier(shipped))
    guess = router.trained(request(text))  # the stage alone, whatever the rules say
    assert guess is not None and guess.agent == agent, guess
    decision, _ = router.local(request(text))
    assert decision is not None and decision.agent == agent, decision


def test_no_shipped_example_is_a_labelled_message() -> None:
    """The labelled set is for measurement only: no example in any shipped agents file may
    equal one of its messages (case, accents, spacing and punctuation aside)."""
    labelled = yaml.safe_load(LABELLED.read_text(encoding="utf-8"))["messages"]
    keys = {_loose(m["text"]) for m in labelled}
    files = [*sorted((ROOT / "configs").glob("**/*.yaml")), BENCHMARKED]
    found = []
    for file in files:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        agents = data.get("agents") if isinstance(data, dict) else None
        for agent in agents if isinstance(agents, list) else []:
            for example in agent.get("examples") or ():
                if _loose(example) in keys:
                    found.append((file.name, agent["name"], example))
    assert files and found == []


def _loose(text: str) -> str:
    """Case, accents, Unicode form, spacing and punctuation (emoji too) aside."""
    text = unicodedata.normalize("NFC", text)
    return " ".join(re.sub(r"[^\w\s]", " ", normalise(text)).split())


def test_the_guard_sees_a_copied_message() -> None:
    assert _loose("  When are you OPEN on saturday?? ") == _loose("When are you open on Saturday?")
    assert _loose("Hi 👋") == _loose("hi")


def test_the_benchmarked_agents_have_the_shipped_examples(shipped: AgentsConfig) -> None:
    """benchmarks/router_accuracy.py measures tests/data/router_agents.yaml: the same examples."""
    benchmarked = load_agents_config(BENCHMARKED)
    assert {a.name: a.examples for a in benchmarked.agents} == {
        a.name: a.examples for a in shipped.agents
    }


# --- order, threshold, fallback ---------------------------------------------------------------


async def test_rules_still_win_over_the_trained_stage(recorded: MetricsProbe) -> None:
    router = Router(parse_agents_config(small()), ScriptedEngine([]))
    # "order" is the orders agent's word, but the keyword rule says chat.
    decision = await router.route(request("what will the weather be, my order is late"))
    assert (decision.agent, decision.reason, decision.confidence) == ("chat", "keyword", None)
    decision = await router.route(request("my parcel is late again", current_agent="chat"))
    assert (decision.agent, decision.reason) == ("chat", "sticky")
    decision = await router.route(request("my parcel is late again"))
    assert (decision.agent, decision.reason) == ("orders", "trained")
    assert decision.confidence is not None and decision.confidence >= 0.5
    assert decision.detail is not None and decision.detail.startswith("orders 0.")
    assert recorded.value("whatsray_routes_total", agent="orders", reason="trained") == 1


async def test_below_the_threshold_the_classifier_decides_with_the_confidence_kept() -> None:
    classifier = ScriptedEngine(['{"agent": "orders"}'])
    router = Router(parse_agents_config(small(trained_threshold=0.99)), classifier)
    decision = await router.route(request("my parcel is late again"))
    assert (decision.agent, decision.reason) == ("orders", "classifier")
    assert classifier.call_count == 1
    assert decision.confidence is not None and 0.5 <= decision.confidence < 0.99


async def test_below_the_threshold_without_a_classifier_the_default_agent_answers() -> None:
    config = parse_agents_config(small(trained_threshold=0.99, classifier=False))
    router = Router(config)
    decision = await router.route(request("my parcel is late again"))
    assert (decision.agent, decision.reason, decision.fallback_cause) == (
        "chat",
        "fallback",
        "disabled",
    )
    assert decision.confidence is not None and decision.confidence < 0.99
    # The session host's router decides the same way, without a remote call.
    local = RulesFirstRouter(config, router)
    assert await local.route(request("my parcel is late again")) == decision
    assert local.remote_calls == 0


async def test_text_without_words_is_not_guessed_at() -> None:
    """An emoji alone: the trained stage knows no n-gram of it, and the classifier is not asked
    either (nothing to read): the default agent answers."""
    classifier = ScriptedEngine([])
    router = Router(parse_agents_config(small()), classifier)
    assert router.trained(request("👍")) is None
    decision = await router.route(request("👍 ??"))
    assert (decision.agent, decision.reason, decision.fallback_cause, decision.confidence) == (
        "chat",
        "fallback",
        "no_text",
        None,
    )
    assert classifier.call_count == 0


async def test_the_session_host_router_uses_the_trained_stage_locally() -> None:
    config = parse_agents_config(small())
    classifier = Router(config, ScriptedEngine([]))
    local = RulesFirstRouter(config, classifier)
    decision = await local.route(request("the parcel never came"))
    assert (decision.agent, decision.reason) == ("orders", "trained")
    assert local.remote_calls == 0


async def test_the_stage_can_be_turned_off_and_is_off_without_examples() -> None:
    off = parse_agents_config(small(trained=False, classifier=False))
    assert not off.trained and Router(off).intent_model is None
    decision = await Router(off).route(request("my parcel is late again"))
    assert decision.reason == "fallback" and decision.confidence is None
    data = small()
    for agent in data["agents"]:
        agent.pop("examples")
    assert not parse_agents_config(data).trained
    # On explicitly, it learns from the descriptions alone.
    data["router"]["trained"] = True
    assert Router(parse_agents_config(data)).intent_model is not None


# --- the model ----------------------------------------------------------------------------------


def test_training_is_deterministic_and_matches_scikit_learn() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    samples = {
        "chat": ("hello there", "thanks a lot", "good night"),
        "orders": ("my order is late", "the parcel never arrived", "wrong item"),
        "shop": ("when do you open", "how much is a bike", "where is the store"),
    }
    first = train_intent_model(samples)
    again = train_intent_model({k: tuple(v) for k, v in samples.items()})
    assert again is first  # cached: the same training data trains once per process
    from whatsray.agents import intent_model

    intent_model._train.cache_clear()
    fresh = train_intent_model(samples)
    texts = ["Is my ORDER late?", "Öffnungszeiten", "hello, how much?", "wher is teh stor"]
    assert [fresh.predict(t) for t in texts] == [first.predict(t) for t in texts]

    # The hand-written prediction gives scikit-learn's probabilities.
    words = TfidfVectorizer(
        preprocessor=normalise, lowercase=False, sublinear_tf=True, ngram_range=(1, 2),
        token_pattern=r"(?u)\b\w+\b",
    )  # fmt: skip
    chars = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), preprocessor=normalise, lowercase=False,
        sublinear_tf=True,
    )  # fmt: skip
    pipeline = make_pipeline(
        make_union(chars, words), LogisticRegression(C=10.0, max_iter=3000, random_state=0)
    )
    labels = [name for name, texts in samples.items() for _ in texts]
    pipeline.fit([text for texts in samples.values() for text in texts], labels)
    for text in texts:
        guess = first.predict(text)
        assert guess is not None
        expected = dict(zip(pipeline.classes_, pipeline.predict_proba([text])[0], strict=True))
        for name, probability in guess.ranking:
            assert probability == pytest.approx(expected[name], abs=1e-9)


def test_two_agents_give_probabilities_that_sum_to_one() -> None:
    model = train_intent_model({"a": ("red apples", "green apples"), "b": ("blue cars", "cars")})
    guess = model.predict("a red car")
    assert guess is not None
    assert sum(p for _, p in guess.ranking) == pytest.approx(1.0)
    assert model.predict("apples").agent == "a"  # type: ignore[union-attr]


# --- config validation ----------------------------------------------------------------------------


def test_examples_are_trimmed_and_the_settings_have_defaults() -> None:
    data = small()
    data["agents"][0]["examples"] = ["  hello   there ", "thanks"]
    config = parse_agents_config(data)
    assert config.agent("chat").examples == ("hello there", "thanks")
    assert config.router.trained is None and config.trained
    assert config.router.trained_threshold == 0.4


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        (["hello", 3], "agent 'chat', field 'examples.1'"),
        (["hello", "  "], "agent 'chat', field 'examples': Value error, example 1 is empty"),
        (["hello", "?!"], "example 1 is empty (or punctuation only)"),
        (["Hello!", "hello"], "example 'hello' is listed twice (also as 'Hello!')"),
        (["x" * 501], "keep examples to short messages (at most 500)"),
        ("hello", "agent 'chat', field 'examples'"),
    ],
)
def test_bad_examples_name_the_agent_and_the_example(examples: Any, message: str) -> None:
    data = small()
    data["agents"][0]["examples"] = examples
    assert message in problems(data)


def test_an_example_of_two_agents_is_an_error() -> None:
    data = small()
    data["agents"][1]["examples"].append("Thanks a lot!")
    assert (
        "agent 'orders', field 'examples': 'Thanks a lot!' is also an example of agent 'chat'"
        in problems(data)
    )
    assert example_key("Thanks a lot!") == example_key("thanks  A LOT")


@pytest.mark.parametrize("threshold", [0, 1, 1.5, -0.1, "high"])
def test_the_threshold_is_a_probability(threshold: Any) -> None:
    assert "router, field 'trained_threshold'" in problems(small(trained_threshold=threshold))


def test_trained_must_be_a_boolean() -> None:
    assert "router, field 'trained'" in problems(small(trained="sometimes"))
