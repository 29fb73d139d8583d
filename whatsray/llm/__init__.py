"""LLM engines behind one protocol: `ChatEngine.chat(messages) -> ChatReply`.

Engines: `ScriptedEngine` (deterministic, tests), `OpenAICompatibleEngine` (OpenAI, Ollama, a
vLLM server), `LlamaCppEngine` (local GGUF, the bundled SmolLM2-135M by default). Build one from
config with `build_engine`. See docs/llm.md.

Importing this package never imports llama_cpp: the llama.cpp engine loads it on first use.
"""

from __future__ import annotations

from whatsray.llm.factory import ENGINES, build_engine
from whatsray.llm.llamacpp import LlamaCppEngine, bundled_model_path
from whatsray.llm.load import EngineLoad, ReportsLoad
from whatsray.llm.openai_compatible import Backoff, OpenAICompatibleEngine
from whatsray.llm.protocol import (
    ALL_LLM_ERRORS,
    ChatEngine,
    ChatMessage,
    ChatReply,
    LLMBadRequest,
    LLMBadResponse,
    LLMConfigError,
    LLMContextTooLong,
    LLMError,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    Role,
    ToolCall,
    ToolSpec,
    Usage,
)
from whatsray.llm.scripted import (
    KeywordRules,
    ScriptedCall,
    ScriptedEngine,
    ScriptExhausted,
    echo,
)

__all__ = [
    "ALL_LLM_ERRORS",
    "ENGINES",
    "Backoff",
    "ChatEngine",
    "ChatMessage",
    "ChatReply",
    "EngineLoad",
    "KeywordRules",
    "LLMBadRequest",
    "LLMBadResponse",
    "LLMConfigError",
    "LLMContextTooLong",
    "LLMError",
    "LLMRateLimited",
    "LLMTimeout",
    "LLMUnavailable",
    "LlamaCppEngine",
    "OpenAICompatibleEngine",
    "ReportsLoad",
    "Role",
    "ScriptExhausted",
    "ScriptedCall",
    "ScriptedEngine",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "build_engine",
    "bundled_model_path",
    "echo",
]
