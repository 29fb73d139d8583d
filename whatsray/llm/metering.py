"""Model calls, measured: `whatsray_llm_*` for every call an agent or the router makes.

`engine` is the engine's name (`llamacpp`, `vllm`, `scripted`, `openai`, or the name a config
gave it): a handful per deployment. The first token is when the engine says it produced one
(engines that stream internally report `ChatReply.first_token_ms`); for one that answers all at
once, the first token reaches us with the whole reply, so it is the call's duration.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable

from whatsray import metrics
from whatsray.llm.protocol import ChatReply, LLMTimeout

__all__ = ["metered"]


async def metered(engine: str, call: Awaitable[ChatReply]) -> ChatReply:
    """Await `call` (one `ChatEngine.chat`) and record it, however it ends."""
    started = time.monotonic()
    result = "error"
    try:
        reply = await call
        result = "ok"
    except (TimeoutError, LLMTimeout):
        result = "timeout"
        raise
    finally:
        elapsed = time.monotonic() - started
        metrics.llm_requests.inc(engine=engine, result=result)
        metrics.llm_seconds.observe(elapsed, engine=engine, result=result)
    first = reply.first_token_ms / 1000 if reply.first_token_ms is not None else elapsed
    metrics.llm_first_token_seconds.observe(first, engine=engine, result=result)
    usage = reply.usage
    if usage.prompt_tokens:
        metrics.llm_tokens.inc(usage.prompt_tokens, engine=engine, direction="prompt")
    if usage.completion_tokens:
        metrics.llm_tokens.inc(usage.completion_tokens, engine=engine, direction="completion")
    return reply
