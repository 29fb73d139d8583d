"""agents.yaml: the shipped file loads; each mistake gets an error naming the agent and field."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest

from whatsray.agents import AgentsConfigError, load_agents_config, parse_agents_config
from whatsray.agents.config import KNOWN_TOOLS, AgentsConfig

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "configs" / "agents.yaml"


def minimal() -> dict[str, Any]:
    return {
        "engines": {"test": {"engine": "scripted", "mode": "echo"}},
        "router": {"default_agent": "assistant", "classifier": False},
        "agents": [
            {
                "name": "assistant",
                "description": "General help.",
                "system_prompt": "You help.",
                "engine": "test",
            },
            {
                "name": "faq",
                "description": "Shop questions.",
                "system_prompt": "You answer from the FAQ.",
                "engine": "test",
                "knowledge": "faq.md",
            },
        ],
    }


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    (tmp_path / "faq.md").write_text("## Hours\nWe open at 9.\n", encoding="utf-8")
    return tmp_path


def parse(data: dict[str, Any], base_dir: Path) -> AgentsConfig:
    return parse_agents_config(data, base_dir=base_dir, source="agents.yaml")


def problems_of(data: dict[str, Any], base_dir: Path) -> AgentsConfigError:
    with pytest.raises(AgentsConfigError) as info:
        parse(data, base_dir)
    return info.value


# --- the shipped file ------------------------------------------------------------------------


def test_shipped_config_loads_with_assistant_and_faq() -> None:
    config = load_agents_config(SHIPPED)
    assert config.names[:2] == ("assistant", "faq")
    assert config.router.default_agent == "assistant"
    faq = config.agent("faq")
    assert faq.knowledge is not None
    assert faq.knowledge.file == ROOT / "configs" / "knowledge" / "faq.md"
    assert faq.knowledge.file.is_file()
    assert "/faq" in faq.routing.commands
    assert "/help" in config.agent("assistant").routing.commands
    assert config.agent("assistant").double_texting.policy == "coalesce"
    assert config.agent("assistant").history_messages == 50
    assert config.engine_for("faq").engine == "llamacpp"
    classifier = config.classifier_engine()
    assert classifier is not None and classifier.key == "local"
    assert config.source == str(SHIPPED)


def test_shipped_engines_keep_their_options_for_the_llm_layer() -> None:
    config = load_agents_config(SHIPPED)
    assert config.engines["scripted"].as_dict() == {"engine": "scripted", "mode": "echo"}
    openai = config.engines["openai"].as_dict()
    assert openai["engine"] == "openai" and openai["api_key_env"] == "OPENAI_API_KEY"
    assert openai["model"] == "gpt-4o-mini"


def test_config_survives_pickling(base_dir: Path) -> None:
    config = parse(minimal(), base_dir)
    assert pickle.loads(pickle.dumps(config)) == config


# --- defaults and shorthands -----------------------------------------------------------------


def test_defaults_and_shorthands(base_dir: Path) -> None:
    data = minimal()
    data["agents"][1]["double_texting"] = "Enqueue"
    config = parse(data, base_dir)
    assistant, faq = config.agent("assistant"), config.agent("faq")
    assert assistant.double_texting.policy == "coalesce"
    assert assistant.double_texting.quiet_period_s == 1.5
    assert assistant.history_messages == 50
    assert assistant.tools == ()
    assert faq.double_texting.policy == "enqueue"
    assert faq.knowledge is not None and faq.knowledge.file == base_dir / "faq.md"
    assert config.classifier_engine() is None  # classifier: false


def test_commands_and_keywords_are_normalised(base_dir: Path) -> None:
    data = minimal()
    data["agents"][1]["routing"] = {"commands": ["FAQ", "/Hours"], "keywords": ["  Opening Hours "]}
    faq = parse(data, base_dir).agent("faq")
    assert faq.routing.commands == ("/faq", "/hours")
    assert faq.routing.keywords == ("opening hours",)


def test_agent_model_overrides_the_engine_model(base_dir: Path) -> None:
    data = minimal()
    data["engines"]["remote"] = {
        "engine": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "small",
    }
    data["agents"][0]["engine"] = "remote"
    data["agents"][0]["model"] = "large"
    config = parse(data, base_dir)
    assert config.engine_for("assistant").model == "large"
    assert config.engines["remote"].model == "small"  # the shared spec is unchanged


def test_reject_policy_with_its_reply(base_dir: Path) -> None:
    data = minimal()
    data["agents"][0]["double_texting"] = {"policy": "reject", "reject_reply": "Hold on!"}
    policy = parse(data, base_dir).agent("assistant").double_texting
    assert (policy.policy, policy.reject_reply) == ("reject", "Hold on!")


# --- each validation error -------------------------------------------------------------------


def test_unknown_policy_names_agent_and_field(base_dir: Path) -> None:
    data = minimal()
    data["agents"][0]["double_texting"] = {"policy": "shout"}
    error = problems_of(data, base_dir)
    assert len(error.problems) == 1
    assert "agent 'assistant'" in str(error)
    assert "field 'double_texting.policy'" in str(error)
    assert "coalesce" in str(error)  # says what is allowed
    assert str(error).startswith("agents.yaml: ")


def test_unknown_engine_reference(base_dir: Path) -> None:
    data = minimal()
    data["agents"][1]["engine"] = "gpt9"
    error = problems_of(data, base_dir)
    assert error.problems == ("agent 'faq', field 'engine': unknown engine 'gpt9' (engines: test)",)


def test_unknown_engine_kind_and_bad_engine_option(base_dir: Path) -> None:
    data = minimal()
    data["engines"]["odd"] = {"engine": "telepathy"}
    data["engines"]["typo"] = {"engine": "scripted", "mood": "echo"}
    error = problems_of(data, base_dir)
    text = str(error)
    assert "engine 'odd', field 'engine': unknown engine kind 'telepathy'" in text
    assert "engine 'typo', field 'mood'" in text


def test_duplicate_agent_names(base_dir: Path) -> None:
    data = minimal()
    data["agents"].append(copy.deepcopy(data["agents"][0]))
    error = problems_of(data, base_dir)
    assert error.problems == ("agent 'assistant', field 'name': declared 2 times",)


def test_missing_knowledge_file(base_dir: Path) -> None:
    data = minimal()
    data["agents"][1]["knowledge"] = {"file": "nowhere/faq.md"}
    error = problems_of(data, base_dir)
    assert len(error.problems) == 1
    assert "agent 'faq', field 'knowledge.file': no such file" in error.problems[0]
    assert str(base_dir / "nowhere" / "faq.md") in error.problems[0]


def test_invalid_regex(base_dir: Path) -> None:
    data = minimal()
    data["agents"][0]["routing"] = {"patterns": ["ok", "(unclosed"]}
    error = problems_of(data, base_dir)
    assert len(error.problems) == 1
    assert "agent 'assistant', field 'routing.patterns.1': invalid regex '(unclosed'" in str(error)


def test_unknown_tool(base_dir: Path) -> None:
    data = minimal()
    data["agents"][0]["tools"] = ["send_rocket"]
    error = problems_of(data, base_dir)
    assert "agent 'assistant', field 'tools': unknown tool 'send_rocket'" in str(error)
    # ...and a name the registry knows is accepted
    config = parse_agents_config(data, base_dir=base_dir, known_tools={"send_rocket"})
    assert config.agent("assistant").tools == ("send_rocket",)


def test_builtin_tools_are_known_and_the_defaults_of_the_loop(base_dir: Path) -> None:
    assert {"send_message", "get_messages", "search_contacts", "handoff_to_human"} <= KNOWN_TOOLS
    data = minimal()
    data["agents"][0]["tools"] = ["get_messages", "send_message"]
    assistant = parse(data, base_dir).agent("assistant")
    assert assistant.tools == ("get_messages", "send_message")
    assert (assistant.max_tool_steps, assistant.turn_timeout_s) == (4, 120.0)
    assert assistant.permissions == ()


def test_a_tool_whose_permission_is_not_granted_names_tool_and_permission(base_dir: Path) -> None:
    data = minimal()
    data["agents"][0]["tools"] = ["search_contacts"]
    error = problems_of(data, base_dir)
    assert (
        "agent 'assistant', field 'tools': tool 'search_contacts' needs the permission "
        "'read_contacts', which the agent is not granted"
    ) in str(error)
    data["agents"][0]["permissions"] = ["read_contacts"]
    assert parse(data, base_dir).agent("assistant").permissions == ("read_contacts",)


def test_unknown_or_repeated_permission_and_repeated_tool(base_dir: Path) -> None:
    data = minimal()
    data["agents"][0]["permissions"] = ["send_anywhere"]
    data["agents"][1]["tools"] = ["get_messages", "get_messages"]
    error = problems_of(data, base_dir)
    assert "agent 'assistant', field 'permissions': unknown permission 'send_anywhere'" in str(
        error
    )
    assert "known: message_any_chat, read_any_chat, read_contacts" in str(error)
    assert "agent 'faq', field 'tools': " in str(error) and "more than once" in str(error)


def test_shipped_support_agent_has_its_tools_and_no_extra_permissions() -> None:
    support = load_agents_config(SHIPPED).agent("support")
    assert support.tools == ("get_messages", "send_message", "handoff_to_human")
    assert support.permissions == ()
    assert "/support" in support.routing.commands
    assert support.description.startswith("Customer support for problems and complaints")


def test_misspelt_field_is_an_error(base_dir: Path) -> None:
    data = minimal()
    data["agents"][0]["sytem_prompt"] = "typo"
    error = problems_of(data, base_dir)
    assert "agent 'assistant', field 'sytem_prompt': Extra inputs are not permitted" in str(error)


def test_missing_required_field_of_an_unnamed_agent(base_dir: Path) -> None:
    data = minimal()
    del data["agents"][0]["name"]
    error = problems_of(data, base_dir)
    assert any(p.startswith("agents[0], field 'name'") for p in error.problems)


def test_router_default_agent_and_classifier_engine_must_exist(base_dir: Path) -> None:
    data = minimal()
    data["router"] = {"default_agent": "boss", "classifier_engine": "nope"}
    error = problems_of(data, base_dir)
    text = str(error)
    assert "router, field 'default_agent': unknown agent 'boss'" in text
    assert "router, field 'classifier_engine': unknown engine 'nope'" in text


def test_command_claimed_twice_and_builtin_command(base_dir: Path) -> None:
    data = minimal()
    data["agents"][0]["routing"] = {"commands": ["/help"], "interactive_prefixes": ["x:"]}
    data["agents"][1]["routing"] = {"commands": ["/help", "/agent"], "interactive_prefixes": ["x:"]}
    text = str(problems_of(data, base_dir))
    assert (
        "agent 'faq', field 'routing.commands': '/help' is already used by agent 'assistant'"
        in text
    )
    assert "agent 'faq', field 'routing.commands': /agent is built in" in text
    assert "agent 'faq', field 'routing.interactive_prefixes': 'x:'" in text


def test_model_override_on_an_engine_without_models(base_dir: Path) -> None:
    data = minimal()
    data["engines"]["local"] = {"engine": "llamacpp"}
    data["agents"][0]["engine"] = "local"
    data["agents"][0]["model"] = "big"
    text = str(problems_of(data, base_dir))
    assert "agent 'assistant', field 'model': engine 'local' (llamacpp) takes no model" in text


def test_several_problems_come_in_one_error(base_dir: Path) -> None:
    data = minimal()
    data["agents"][0]["double_texting"] = "shout"
    data["agents"][1]["engine"] = "gpt9"
    data["extra"] = 1
    error = problems_of(data, base_dir)
    assert len(error.problems) == 3
    assert "3 problems" in str(error)
    assert isinstance(error, ValueError)
    copy_ = pickle.loads(pickle.dumps(error))
    assert copy_.problems == error.problems and str(copy_) == str(error)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "expected a mapping"),
        ({"engines": {}, "router": {"default_agent": "a"}, "agents": []}, "`engines` must map"),
        ({"engines": {"t": {"engine": "scripted"}}, "router": {}, "agents": []}, "non-empty list"),
    ],
)
def test_wrong_shapes(data: Any, expected: str, tmp_path: Path) -> None:
    with pytest.raises(AgentsConfigError, match=expected):
        parse_agents_config(data, base_dir=tmp_path)


def test_files_that_cannot_be_read_or_parsed(tmp_path: Path) -> None:
    with pytest.raises(AgentsConfigError, match="cannot read the file"):
        load_agents_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents: [unclosed\n", encoding="utf-8")
    with pytest.raises(AgentsConfigError, match="not valid YAML"):
        load_agents_config(bad)


def test_knowledge_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf" / "kb").mkdir(parents=True)
    (tmp_path / "conf" / "kb" / "faq.md").write_text("## Hours\n9 to 5\n", encoding="utf-8")
    file = tmp_path / "conf" / "agents.yaml"
    file.write_text(
        """
engines: {test: {engine: scripted}}
router: {default_agent: faq}
agents:
  - name: faq
    description: d
    system_prompt: s
    engine: test
    knowledge: kb/faq.md
""",
        encoding="utf-8",
    )
    config = load_agents_config(file)
    knowledge = config.agent("faq").knowledge
    assert knowledge is not None and knowledge.file == tmp_path / "conf" / "kb" / "faq.md"


# --- backpressure ----------------------------------------------------------------------------


def test_backpressure_defaults_and_a_fallback_engine(base_dir: Path) -> None:
    data = minimal()
    data["engines"]["spare"] = {"engine": "scripted", "mode": "echo", "prefix": "spare: "}
    data["agents"][0]["backpressure"] = {"fallback_engine": "spare", "max_concurrent_turns": 2}
    config = parse(data, base_dir)
    spec = config.agent("assistant").backpressure
    assert (spec.max_concurrent_turns, spec.fallback_after_s, spec.notice_after_s) == (2, 10.0, 8.0)
    fallback = config.fallback_engine_for("assistant")
    assert fallback is not None and fallback.key == "spare"
    assert config.fallback_engine_for("faq") is None
    # An engine override runs everything on one engine: no fallback left to need a key.
    assert config.with_engine("test").fallback_engine_for("assistant") is None


def test_a_fallback_must_be_another_known_engine(base_dir: Path) -> None:
    data = minimal()
    data["agents"][0]["backpressure"] = {"fallback_engine": "nope"}
    data["agents"][1]["backpressure"] = {"fallback_engine": "test"}
    error = problems_of(data, base_dir)
    assert (
        "agent 'assistant', field 'backpressure.fallback_engine': unknown engine 'nope'"
        in error.problems
    )
    assert any("'test' is the agent's own engine" in p for p in error.problems)
    data = minimal()
    data["agents"][0]["backpressure"] = {"notice_after_s": 0}
    assert "backpressure.notice_after_s" in str(problems_of(data, base_dir))
