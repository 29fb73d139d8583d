"""`whatsray route`: which agent would answer a message, decided by the platform's own Router.

whatsray route --agents configs/agents.yaml "when are you open?" "my order is late"
printf 'hi\\nwhere is my bike?\\n' | whatsray route --agents configs/agents.yaml
whatsray route --agents configs/agents.yaml --llm "..."     also ask the LLM classifier

Messages are the arguments, else standard input, one a line (empty lines are skipped). Each is
routed on its own, as the first message of a chat: the rules, then the trained stage, then (with
--llm only) the LLM classifier, then the default agent. One JSON object a line:

  {"text": ..., "agent": ..., "by": "rule" | "trained" | "llm" | "fallback", "confidence": ...}

`confidence` is the trained stage's top probability whenever it was asked (for "trained", and
for "fallback" after it was below the threshold); null when a rule decided, for "llm" (the
classifier gives no probability) and when the stage is off. Exit status: 0; 2 for a bad agents
file or option; 1 when the LLM classifier's engine cannot be built. See docs/router.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

from whatsray.agents.config import AgentsConfig, AgentsConfigError, load_agents_config
from whatsray.agents.router import RouteDecision, Router, RouteRequest
from whatsray.llm import ChatEngine, build_engine

__all__ = ["add_route_commands", "route_messages", "route_row"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
CHAT = "whatsray-route"
By = Literal["rule", "trained", "llm", "fallback"]


def add_route_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "route",
        help="which agent would answer these messages (the platform's router)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--agents", type=Path, required=True, help="the agents file")
    parser.add_argument(
        "--llm",
        action="store_true",
        help="also ask the LLM classifier (router.classifier_engine) when the rules and the "
        "trained stage do not decide; without it the classifier is never built",
    )
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="messages (default: stdin)")
    parser.set_defaults(func=_run)


def by(decision: RouteDecision) -> By:
    if decision.reason == "trained":
        return "trained"
    if decision.reason == "classifier":
        return "llm"
    if decision.reason == "fallback":
        return "fallback"
    return "rule"


def route_row(text: str, decision: RouteDecision) -> dict[str, Any]:
    """The JSON object printed for one message."""
    kind = by(decision)
    confidence = decision.confidence if kind in ("trained", "fallback") else None
    return {
        "text": text,
        "agent": decision.agent,
        "by": kind,
        "confidence": None if confidence is None else round(confidence, 4),
    }


async def route_messages(
    config: AgentsConfig, texts: Sequence[str], *, llm: bool, out: TextIO
) -> None:
    """Route each text with the Router the platform builds (whatsray/agents/build.py): the
    classifier's engine only with `llm`."""
    engine: ChatEngine | None = None
    spec = config.classifier_engine() if llm else None
    if spec is not None:
        engine = build_engine(spec.as_dict())
    try:
        start = getattr(engine, "start", None)
        if callable(start):
            await start()
        router = Router(config, engine)
        for text in texts:
            decision = await router.route(RouteRequest(CHAT, (text,)))
            out.write(json.dumps(route_row(text, decision), ensure_ascii=False) + "\n")
            out.flush()
    finally:
        if engine is not None:
            await engine.close()


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_agents_config(args.agents)
    except AgentsConfigError as exc:
        print(f"whatsray route: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.llm and config.classifier_engine() is None:
        print(
            f"whatsray route: --llm, but {args.agents} turns the classifier off "
            "(router.classifier: false)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    texts = list(args.texts) if args.texts else sys.stdin.read().splitlines()
    texts = [t for t in texts if t.strip()]
    try:
        asyncio.run(route_messages(config, texts, llm=args.llm, out=sys.stdout))
    except (ImportError, OSError, ValueError, RuntimeError) as exc:
        print(f"whatsray route: the classifier's engine failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
