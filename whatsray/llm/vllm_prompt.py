"""From our chat values to a prompt for a local model, and from its text back to tool calls.

vLLM's engine takes tokens, not messages: the model's own chat template (from its tokenizer)
turns the conversation into the prompt. Templates differ in what they know:

- a template that mentions `tools` (Llama 3.1+, Qwen, Hermes, Mistral...) gets the tools as
  OpenAI-style function definitions and the conversation with its tool calls and tool results;
- any other template (SmolLM2's among them) gets plain system/user/assistant turns: the tools
  are described in the system prompt, tool calls and results are written out as text (the
  llama.cpp engine's `messages_for_llama`), and a reply that is only a JSON tool call is read
  back as one (`tool_calls_from_content`).

`tool_choice="required"` is enforced while decoding instead of asked for: the reply is
constrained to the JSON schema of "one call of one offered tool" (`required_tool_call_schema`),
so even a 135M model produces a well-formed call.

Pure functions over a small tokenizer protocol: testable without vLLM.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from whatsray.llm.llamacpp import messages_for_llama, tool_calls_from_content
from whatsray.llm.protocol import ChatMessage, ToolCall, ToolChoice, ToolSpec


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer used here."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def template_supports_tools(tokenizer: Any) -> bool:
    """Whether the chat template reads a `tools` variable (the convention of HF templates)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one, or any
        template = template.get("default") or next(iter(template.values()), None)
    return isinstance(template, str) and re.search(r"\btools\b", template) is not None


def offered_tools(
    tools: Sequence[ToolSpec] | None, tool_choice: ToolChoice | None
) -> tuple[ToolSpec, ...]:
    """The tools the model is told about: none when `tool_choice="none"`."""
    if not tools or tool_choice == "none":
        return ()
    return tuple(tools)


def render_prompt(
    tokenizer: ChatTokenizer,
    messages: Sequence[ChatMessage],
    tools: Sequence[ToolSpec] = (),
    *,
    tool_choice: ToolChoice | None = None,
    native_tools: bool | None = None,
) -> str:
    """The prompt text, ending where the assistant's reply starts. `native_tools` says whether
    the template takes tools (default: look at the template)."""
    native = template_supports_tools(tokenizer) if native_tools is None else native_tools
    if native:
        conversation: list[dict[str, Any]] = [_message_for_template(m) for m in messages]
        kwargs: dict[str, Any] = {}
        if tools:
            kwargs["tools"] = [_tool_for_template(tool) for tool in tools]
    else:
        conversation = list(messages_for_llama(messages))
        if tools:
            conversation = _with_tool_instructions(conversation, tools, tool_choice)
        kwargs = {}
    text = tokenizer.apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=True, **kwargs
    )
    if not isinstance(text, str):
        raise TypeError(f"the chat template returned {type(text).__name__}, not text")
    return text


def tool_instructions(tools: Sequence[ToolSpec], tool_choice: ToolChoice | None = None) -> str:
    """How a model without native tool calling is told about the tools."""
    listing = json.dumps(
        [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]
    )
    how = (
        'To call a tool, reply with only a JSON object: {"name": "<tool name>", '
        '"arguments": {<arguments>}}.'
    )
    if tool_choice == "required":
        return f"You must call one of these tools:\n{listing}\n{how}"
    return f"You can call these tools:\n{listing}\n{how} Otherwise, reply normally."


def required_tool_call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """A JSON schema whose instances are exactly one call of one of `tools`: decoding with it
    forces a well-formed tool call (`tool_choice="required"`)."""
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [tool.name]},
                "arguments": tool.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


_TAGGED_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def parse_tool_calls(text: str, tools: Sequence[ToolSpec]) -> tuple[str, tuple[ToolCall, ...]]:
    """`(content, tool_calls)` read from the model's text. Understands a reply that is only
    JSON naming an offered tool (any model) and `<tool_call>{...}</tool_call>` blocks (Hermes,
    Qwen and other templates); anything else is content. Never raises."""
    if not tools:
        return text, ()
    tagged = _TAGGED_CALL.findall(text)
    if tagged:
        calls = tool_calls_from_content("[" + ",".join(tagged) + "]", tools)
        if calls:
            return _TAGGED_CALL.sub("", text).strip(), calls
    calls = tool_calls_from_content(text, tools)
    return ("", calls) if calls else (text, ())


def _with_tool_instructions(
    conversation: list[dict[str, Any]], tools: Sequence[ToolSpec], tool_choice: ToolChoice | None
) -> list[dict[str, Any]]:
    instructions = tool_instructions(tools, tool_choice)
    if conversation and conversation[0]["role"] == "system":
        first = conversation[0]
        merged = f"{first['content']}\n\n{instructions}" if first["content"] else instructions
        return [{**first, "content": merged}, *conversation[1:]]
    return [{"role": "system", "content": instructions}, *conversation]


def _message_for_template(message: ChatMessage) -> dict[str, Any]:
    """OpenAI's message shape, with tool-call arguments as objects: HF templates index into
    them (`tool_call.arguments | tojson`)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments(call.arguments_json)},
            }
            for call in message.tool_calls
        ]
    return out


def _arguments(arguments_json: str) -> Any:
    try:
        value = json.loads(arguments_json)
    except ValueError:
        return arguments_json  # malformed arguments stay visible to the model as they were
    return value if isinstance(value, Mapping) else arguments_json


def _tool_for_template(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }
