"""Router accuracy: the labelled routing set through the router's stages.

Rows, each routing every message of the labelled set (tests/data/router_labelled.yaml):

- "rules only": the explicit rules, then the default agent (no trained stage, no classifier);
- "rules + trained": the rules, then the trained stage (the agents' `examples`, at the file's
  `router.trained_threshold`), then the default agent: the router without an LLM;
- "rules + trained + KEY" for each engine named with `--engine` (a key of the agents file's
  `engines:`): the full router, with that engine as the LLM classifier below the threshold.

For engine rows the classifier is also asked about every message alone (`Router.classify`: the
LLM's structured choice, or the fallback when its answer is invalid, late or an error): the
"classifier only" column. Messages are routed one at a time, as first messages of a chat (no
current agent, so nothing is sticky); the full router is computed as `local(request)` (rules,
trained stage) or `classify(request)`, which is what `route` does.

Columns: accuracy of the classifier alone and of the full router (a fallback counts with the
agent it picked), how many decisions each stage made, how many classifier answers were not an
agent ("invalid"; timeouts and errors apart), the classifier's median and p95 latency. Then the
full router's accuracy per agent and per language, and one confusion line per row and agent.

Run:  .venv/bin/python benchmarks/router_accuracy.py --engine local
      .venv/bin/python benchmarks/router_accuracy.py --agents my_agents.yaml --engine vllm
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from whatsray.agents import AgentsConfig, Router, RouteRequest, load_agents_config  # noqa: E402
from whatsray.agents.router import RouteDecision  # noqa: E402
from whatsray.llm import ChatEngine, build_engine  # noqa: E402

DEFAULT_AGENTS = ROOT / "configs" / "agents.yaml"
DEFAULT_LABELLED = ROOT / "tests" / "data" / "router_labelled.yaml"
RULES_ONLY = "rules only"
TRAINED = "rules + trained"
RULE_REASONS = frozenset({"command", "interactive", "keyword", "pattern"})
CHAT = "router-benchmark"
WARMUP_TEXT = "hello, is anyone there?"  # not in the set: loads the model, fills caches


@dataclass(frozen=True)
class Labelled:
    text: str
    agent: str
    lang: str = "en"


@dataclass
class Row:
    """One message's outcome for one engine."""

    text: str
    label: str
    lang: str
    rule: str | None  # the rule kind that decided, or None
    stage: str  # what decided in the full router: rule, trained, classifier or fallback
    trained: str | None  # the trained stage's likeliest agent (threshold aside), when asked
    confidence: float | None  # and its probability
    classifier: str | None  # the classifier-alone decision (None for "rules only")
    classifier_reason: str | None
    fallback_cause: str | None
    answer: str | None
    latency_ms: float | None
    routed: str | None  # the full router's decision


@dataclass
class Result:
    engine: str
    rows: list[Row] = field(default_factory=list)

    @property
    def has_classifier(self) -> bool:
        return self.engine not in (RULES_ONLY, TRAINED)

    def stages(self) -> Counter[str]:
        return Counter(r.stage for r in self.rows)

    def accuracy_classifier(self) -> float | None:
        if not self.has_classifier:
            return None
        return _share(r.classifier == r.label for r in self.rows)

    def accuracy_router(self) -> float:
        return _share(r.routed == r.label for r in self.rows)

    def fallbacks(self) -> int:
        """Full-router decisions made by the fallback (default agent)."""
        return self.stages()["fallback"]

    def causes(self) -> Counter[str]:
        return Counter(r.fallback_cause for r in self.rows if r.fallback_cause)

    def latencies(self) -> list[float]:
        return sorted(r.latency_ms for r in self.rows if r.latency_ms is not None)


def _share(hits: Any) -> float:
    values = list(hits)
    return sum(values) / len(values) if values else 0.0


def load_labelled(path: Path, names: Sequence[str]) -> list[Labelled]:
    """The set's messages; a label that is not an agent of the agents file is an error."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    items = [Labelled(m["text"], m["agent"], m.get("lang", "en")) for m in data["messages"]]
    unknown = sorted({i.agent for i in items} - set(names))
    if unknown:
        raise SystemExit(
            f"{path}: labels {unknown} are not agents of the agents file ({', '.join(names)})"
        )
    return items


async def run_engine(
    config: AgentsConfig,
    key: str | None,
    items: Sequence[Labelled],
    *,
    trained: bool = True,
    quiet: bool = False,
) -> Result:
    """Route every message with the engine `key` as classifier (None: no classifier), with or
    without the trained stage."""
    router_spec = config.router.model_copy(
        update={"classifier": key is not None, **({} if trained else {"trained": False})}
    )
    config = config.model_copy(update={"router": router_spec})
    engine: ChatEngine | None = None
    if key is not None:
        if key not in config.engines:
            known = ", ".join(sorted(config.engines))
            raise SystemExit(f"engine {key!r} is not in the agents file's engines: ({known})")
        engine = build_engine(config.engines[key].as_dict())
    result = Result(f"{TRAINED} + {key}" if key else TRAINED if trained else RULES_ONLY)
    router = Router(config, engine)
    try:
        start = getattr(engine, "start", None)
        if callable(start):
            await start()
        if engine is not None:
            await router.classify(RouteRequest(CHAT, (WARMUP_TEXT,)))
        for index, item in enumerate(items, start=1):
            request = RouteRequest(CHAT, (item.text,))
            rule = router.rules(request)
            local, guess = router.local(request)
            decided: RouteDecision | None = None
            if engine is not None or local is None:
                decided = await router.classify(request)
            routed = local or decided
            assert routed is not None
            stage = "rule" if rule else routed.reason
            result.rows.append(
                Row(
                    text=item.text,
                    label=item.agent,
                    lang=item.lang,
                    rule=rule.reason if rule else None,
                    stage=stage,
                    trained=guess.agent if guess else None,
                    confidence=guess.confidence if guess else None,
                    classifier=decided.agent if decided and engine is not None else None,
                    classifier_reason=decided.reason if decided else None,
                    fallback_cause=decided.fallback_cause if decided else None,
                    answer=decided.classifier_answer if decided else None,
                    latency_ms=decided.classifier_latency_ms if decided else None,
                    routed=routed.agent,
                )
            )
            if not quiet and index % 10 == 0:
                print(f"  {result.engine}: {index}/{len(items)}", file=sys.stderr, flush=True)
    finally:
        if engine is not None:
            await engine.close()
    return result


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _ms(values: Sequence[float], q: float) -> str:
    if not values:
        return "n/a"
    if q == 0.5:
        return f"{statistics.median(values):.0f}"
    return f"{values[min(len(values) - 1, int(q * len(values)))]:.0f}"


def table(results: Sequence[Result]) -> list[str]:
    lines = [
        "| router | messages | classifier only | full router | by rules / trained / classifier "
        "| fallbacks | invalid answers | timeouts / errors | classifier median ms "
        "| classifier p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        causes = res.causes()
        stages = res.stages()
        n = len(res.rows)
        invalid = causes["invalid_answer"] if res.has_classifier else "n/a"
        late = f"{causes['timeout']} / {causes['error']}" if res.has_classifier else "n/a"
        lines.append(
            f"| {res.engine} | {n} | {_pct(res.accuracy_classifier())} "
            f"| {_pct(res.accuracy_router())} "
            f"| {stages['rule']} / {stages['trained']} / {stages['classifier']} "
            f"| {res.fallbacks()} ({_pct(res.fallbacks() / n)}) "
            f"| {invalid} | {late} | {_ms(res.latencies(), 0.5)} | {_ms(res.latencies(), 0.95)} |"
        )
    return lines


def breakdown(results: Sequence[Result], names: Sequence[str]) -> list[str]:
    """The full router's accuracy per agent (the label) and per language."""
    langs = sorted({r.lang for r in results[0].rows}) if results else []
    groups = [*names, *(f"lang {lang}" for lang in langs)]
    lines = [
        "| router | " + " | ".join(groups) + " |",
        "|---|" + "---|" * len(groups),
    ]
    for res in results:
        cells = []
        for group in groups:
            lang = group.removeprefix("lang ") if group.startswith("lang ") else None
            rows = [r for r in res.rows if (r.lang == lang if lang else r.label == group)]
            right = sum(1 for r in rows if r.routed == r.label)
            cells.append(f"{right}/{len(rows)} ({_pct(right / len(rows) if rows else None)})")
        lines.append(f"| {res.engine} | " + " | ".join(cells) + " |")
    return lines


def confusion(results: Sequence[Result], names: Sequence[str]) -> list[str]:
    """Per engine and true agent: right/total, and where the others went."""
    lines = []
    for res in results:
        views = [("classifier only", True), ("full router", False)]
        for title, alone in views[0 if res.has_classifier else 1 :]:
            parts = []
            for name in names:
                rows = [r for r in res.rows if r.label == name]
                got = Counter(r.classifier if alone else r.routed for r in rows)
                wrong = ", ".join(f"{k} {v}" for k, v in got.most_common() if k != name)
                parts.append(f"{name} {got[name]}/{len(rows)}" + (f" ({wrong})" if wrong else ""))
            lines.append(f"- {res.engine}, {title}: " + "; ".join(parts))
    return lines


def rule_summary(result: Result) -> str:
    """How many messages an explicit rule decided, and how many of those it got right."""
    hits = [r for r in result.rows if r.rule in RULE_REASONS]
    right = sum(1 for r in hits if r.routed == r.label)
    return (
        f"explicit rules decide {len(hits)} of {len(result.rows)} messages, "
        f"{right} of them right ({_pct(right / len(hits) if hits else None)}); "
        f"the other {len(result.rows) - len(hits)} go to the later stages"
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.system()}"


async def run_all(
    config: AgentsConfig, items: Sequence[Labelled], engines: Sequence[str], *, quiet: bool
) -> list[Result]:
    results = [
        await run_engine(config, None, items, trained=False, quiet=quiet),
        await run_engine(config, None, items, quiet=quiet),
    ]
    for key in engines:
        started = time.perf_counter()
        results.append(await run_engine(config, key, items, quiet=quiet))
        if not quiet:
            print(f"  {key}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return results


def report(
    args: argparse.Namespace,
    config: AgentsConfig,
    items: Sequence[Labelled],
    results: Sequence[Result],
) -> None:
    counts = Counter(i.agent for i in items)
    command = " ".join([Path(sys.executable).name, *sys.argv])
    print(f"command: {command}")
    print(f"date: {args.started}")
    print(f"machine: {machine()}")
    print(f"agents: {args.agents}; labelled set: {args.labelled}")
    print(
        f"messages: {len(items)} ("
        + ", ".join(f"{name} {counts[name]}" for name in config.names)
        + f"); default agent: {config.router.default_agent}; "
        + f"classifier timeout: {config.router.classifier_timeout_s} s; "
        + f"trained threshold: {config.router.trained_threshold}; "
        + f"examples: {sum(len(a.examples) for a in config.agents)}"
    )
    print()
    for line in table(results):
        print(line)
    print()
    for line in breakdown(results, config.names):
        print(line)
    print()
    print(rule_summary(results[0]))
    majority, most = counts.most_common(1)[0]
    print(f"always answering {majority} would score {_pct(most / len(items))}")
    print()
    for line in confusion(results, config.names):
        print(line)
    if args.json:
        dump = {r.engine: [asdict(row) for row in r.rows] for r in results}
        Path(args.json).write_text(json.dumps(dump, indent=1, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=Path, default=DEFAULT_AGENTS, help="the agents file")
    parser.add_argument(
        "--labelled", type=Path, default=DEFAULT_LABELLED, help="the labelled routing set"
    )
    parser.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="KEY",
        help="a key of the agents file's engines: to use as classifier (repeatable)",
    )
    parser.add_argument("--limit", type=int, default=0, help="only N messages, spread over the set")
    parser.add_argument(
        "--classifier-timeout",
        type=float,
        help="seconds before the fallback decides (default: the agents file's router setting)",
    )
    parser.add_argument("--json", help="also write every decision to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args()
    args.started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    config = load_agents_config(args.agents)
    if args.classifier_timeout is not None:
        router = config.router.model_copy(update={"classifier_timeout_s": args.classifier_timeout})
        config = config.model_copy(update={"router": router})
    items = load_labelled(args.labelled, config.names)
    if 0 < args.limit < len(items):  # spread over the set, which is grouped by agent
        items = [items[i * len(items) // args.limit] for i in range(args.limit)]
    results = asyncio.run(run_all(config, items, args.engine, quiet=args.quiet))
    report(args, config, items, results)


if __name__ == "__main__":
    main()
