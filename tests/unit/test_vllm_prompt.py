"""Prompts for vLLM from our chat values, and tool calls read back from a model's text.

The tokenizer here renders with real Jinja chat templates (the way Hugging Face tokenizers do),
one like SmolLM2's (no tools) and one that takes tools: no vLLM needed.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2

from whatsray.llm.protocol import ChatMessage, ToolCall, ToolSpec
from whatsray.llm.vllm_prompt import (
    offered_tools,
    parse_tool_calls,
    render_prompt,
    required_tool_call_schema,
    template_supports_tools,
)

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TOOLS_TEMPLATE = (
    "{% if tools %}TOOLS {{ tools | tojson }}\n{% endif %}"
    "{% for m in messages %}[{{ m.role }}] {{ m.content or '' }}"
    "{% if m.tool_calls %} CALLS {{ m.tool_calls | tojson }}{% endif %}"
    "{% if m.tool_call_id %} FOR {{ m.tool_call_id }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)
WEATHER = ToolSpec(
    name="get_weather",
    description="Weather in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
TIME = ToolSpec(name="get_time", description="The time")


class JinjaTokenizer:
    def __init__(self, template: str) -> None:
        self.chat_template = template
        self.calls: list[dict[str, Any]] = []

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        self.calls.append({"conversation": conversation, **kwargs})
        assert kwargs.get("tokenize") is False
        env = jinja2.Environment(autoescape=False)  # prompts, not HTML
        env.filters["tojson"] = lambda value: json.dumps(value)
        return env.from_string(self.chat_template).render(
            messages=conversation,
            tools=kwargs.get("tools"),
            add_generation_prompt=kwargs.get("add_generation_prompt", False),
        )


def test_template_supports_tools_looks_for_the_tools_variable() -> None:
    assert template_supports_tools(JinjaTokenizer(TOOLS_TEMPLATE))
    assert not template_supports_tools(JinjaTokenizer(SMOLLM2_TEMPLATE))
    assert not template_supports_tools(object())
    named = JinjaTokenizer("")
    named.chat_template = {"default": TOOLS_TEMPLATE}  # type: ignore[assignment]
    assert template_supports_tools(named)


def test_a_plain_template_gets_plain_turns() -> None:
    tokenizer = JinjaTokenizer(SMOLLM2_TEMPLATE)
    text = render_prompt(tokenizer, [ChatMessage.user("Hi!")])
    assert text == (
        "<|im_start|>system\nYou are SmolLM<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "tools" not in tokenizer.calls[0]


def test_a_plain_template_gets_the_tools_in_the_system_prompt() -> None:
    tokenizer = JinjaTokenizer(SMOLLM2_TEMPLATE)
    messages = [ChatMessage.system("Be brief."), ChatMessage.user("Weather?")]
    text = render_prompt(tokenizer, messages, [WEATHER])
    system = tokenizer.calls[0]["conversation"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("Be brief.\n\nYou can call these tools:")
    assert '"name": "get_weather"' in text
    assert "You are SmolLM" not in text  # the caller's system prompt stays the only one


def test_without_a_system_prompt_the_tool_instructions_become_one() -> None:
    tokenizer = JinjaTokenizer(SMOLLM2_TEMPLATE)
    render_prompt(tokenizer, [ChatMessage.user("Weather?")], [WEATHER], tool_choice="required")
    first = tokenizer.calls[0]["conversation"][0]
    assert first["role"] == "system" and first["content"].startswith("You must call one")


def test_a_plain_template_gets_tool_calls_and_results_as_text() -> None:
    tokenizer = JinjaTokenizer(SMOLLM2_TEMPLATE)
    call = ToolCall(id="c1", name="get_weather", arguments_json='{"city": "Oslo"}')
    messages = [
        ChatMessage.user("Weather in Oslo?"),
        ChatMessage.assistant(tool_calls=[call]),
        ChatMessage.tool("rain", "c1", name="get_weather"),
    ]
    render_prompt(tokenizer, messages)
    roles = [m["role"] for m in tokenizer.calls[0]["conversation"]]
    assert roles == ["user", "assistant", "user"]  # no tool role for a template without one
    assert "get_weather" in tokenizer.calls[0]["conversation"][1]["content"]


def test_a_tools_template_gets_tools_and_structured_calls() -> None:
    tokenizer = JinjaTokenizer(TOOLS_TEMPLATE)
    call = ToolCall(id="c1", name="get_weather", arguments_json='{"city": "Oslo"}')
    messages = [
        ChatMessage.user("Weather in Oslo?"),
        ChatMessage.assistant(tool_calls=[call]),
        ChatMessage.tool("rain", "c1", name="get_weather"),
    ]
    render_prompt(tokenizer, messages, [WEATHER])
    sent = tokenizer.calls[0]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["conversation"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    assert sent["conversation"][2] == {
        "role": "tool",
        "content": "rain",
        "name": "get_weather",
        "tool_call_id": "c1",
    }


def test_malformed_arguments_reach_the_template_as_they_were() -> None:
    tokenizer = JinjaTokenizer(TOOLS_TEMPLATE)
    call = ToolCall(id="c1", name="get_weather", arguments_json="{city: Oslo")
    render_prompt(tokenizer, [ChatMessage.assistant(tool_calls=[call])])
    function = tokenizer.calls[0]["conversation"][0]["tool_calls"][0]["function"]
    assert function["arguments"] == "{city: Oslo"


def test_tool_choice_none_offers_no_tools() -> None:
    assert offered_tools([WEATHER], "none") == ()
    assert offered_tools([WEATHER], "auto") == (WEATHER,)
    assert offered_tools(None, "required") == ()


def test_the_required_schema_accepts_exactly_one_call_of_an_offered_tool() -> None:
    single = required_tool_call_schema([WEATHER])
    assert single["properties"]["name"] == {"type": "string", "enum": ["get_weather"]}
    assert single["properties"]["arguments"] == WEATHER.parameters
    assert single["required"] == ["name", "arguments"]
    both = required_tool_call_schema([WEATHER, TIME])
    assert [v["properties"]["name"]["enum"] for v in both["anyOf"]] == [
        ["get_weather"],
        ["get_time"],
    ]


def test_parse_reads_a_bare_json_call() -> None:
    content, calls = parse_tool_calls('{"name": "get_time", "arguments": {}}', [WEATHER, TIME])
    assert content == ""
    assert [(c.name, c.arguments_json) for c in calls] == [("get_time", "{}")]


def test_parse_reads_tagged_calls_and_keeps_the_text_around_them() -> None:
    text = (
        "Let me check.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
        '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    )
    content, calls = parse_tool_calls(text, [WEATHER, TIME])
    assert content == "Let me check."
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].arguments_json) == {"city": "Oslo"}


def test_parse_leaves_text_and_unknown_tools_alone() -> None:
    assert parse_tool_calls("Sunny today!", [WEATHER]) == ("Sunny today!", ())
    unknown = '{"name": "delete_everything", "arguments": {}}'
    assert parse_tool_calls(unknown, [WEATHER]) == (unknown, ())
    broken = "<tool_call>{not json</tool_call>"
    assert parse_tool_calls(broken, [WEATHER]) == (broken, ())
    assert parse_tool_calls('{"name": "get_weather"}', []) == ('{"name": "get_weather"}', ())
