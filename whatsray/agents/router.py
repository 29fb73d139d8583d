"""The Router: picks the agent for a turn. Explicit rules first, then the trained stage (a small
text classifier learnt from the agents' examples), then an LLM classifier, then a deterministic
fallback, so a turn is always routed even with the LLM down.

Order (docs/agents.md, "Routing order"): handoff, commands, interactive reply ids, keywords,
patterns, the sticky current agent, the trained stage (when its top probability reaches
`router.trained_threshold`), the classifier, the default agent. Every decision says which
path made it (`RouteDecision.reason`), and the router counts them for metrics.

The classifier asks for a structured answer, `{"agent": <one of the names>}`, through the engine's
`response_schema` (a JSON schema with the names as an enum): engines with constrained decoding
(llama.cpp, vLLM, OpenAI) can then only answer a valid name. Engines without it may answer
anything, so the answer is always checked; text that is not JSON is read tolerantly. Accuracy per
engine: benchmarks/router_accuracy.py, docs/router.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from whatsray import metrics
from whatsray.agents.config import AGENT_COMMAND, AgentsConfig, AgentSpec
from whatsray.agents.examples import training_samples
from whatsray.agents.intent_model import IntentGuess, IntentModel, train_intent_model
from whatsray.llm import ChatEngine, ChatMessage, LLMTimeout
from whatsray.llm.metering import metered
from whatsray.observability.logs import log_ids
from whatsray.whatsapp.events import MessageEvent
from whatsray.whatsapp.message_content import ButtonContent, InteractiveContent

__all__ = [
    "FallbackCause",
    "RouteDecision",
    "RouteReason",
    "RouteRequest",
    "Router",
    "classifier_schema",
    "parse_classifier_answer",
    "parse_structured_answer",
    "with_confidence",
]

log = logging.getLogger(__name__)

RouteReason = Literal[
    "command",
    "interactive",
    "keyword",
    "pattern",
    "sticky",
    "handoff",
    "trained",
    "classifier",
    "fallback",
]
# Why the fallback decided: the classifier was off, had nothing to read, failed, was late or
# answered something that is not an agent.
FallbackCause = Literal["disabled", "single_agent", "no_text", "error", "timeout", "invalid_answer"]

# How the classifier's answer was read: a JSON object (the structured answer) or free text.
AnswerForm = Literal["json", "text"]

_CLASSIFIER_MAX_INPUT_CHARS = 1000  # the newest text is what matters; keep the prompt small
# `{"agent": "assistant"}` is about 8 tokens; grammars allow some whitespace around the braces.
# Too few tokens would cut the JSON short and turn a right answer into an invalid one.
_CLASSIFIER_MAX_TOKENS = 32
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What the router needs of a turn. `idle_s`: seconds since the chat's previous turn (None
    when there was none); it decides whether the current agent still holds the chat."""

    chat: str
    texts: tuple[str, ...] = ()  # the turn's input messages' words, oldest first
    interactive_ids: tuple[str, ...] = ()  # ids of tapped buttons and list rows, oldest first
    current_agent: str | None = None
    handoff: bool = False
    idle_s: float | None = None

    @classmethod
    def from_events(
        cls,
        chat: str,
        events: Sequence[MessageEvent],
        *,
        current_agent: str | None = None,
        handoff: bool = False,
        idle_s: float | None = None,
    ) -> RouteRequest:
        texts = tuple(t for t in (e.text for e in events) if t)
        ids: list[str] = []
        for event in events:
            content = event.content
            if isinstance(content, InteractiveContent) and content.reply_id:
                ids.append(content.reply_id)
            elif isinstance(content, ButtonContent) and content.payload:
                ids.append(content.payload)
        return cls(chat, texts, tuple(ids), current_agent, handoff, idle_s)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """`agent` is None only for `handoff` (no agent runs). `detail` says what matched: the
    command, reply id, keywords or pattern, the error, for `trained` the two likeliest agents
    with their probabilities, or for `classifier` how the answer was read ("json" or "text");
    `classifier_answer` is the raw answer. `confidence`: the trained stage's top probability
    whenever it was asked (also when it was below the threshold and the classifier or the
    fallback decided); None when a rule decided or the stage is off."""

    agent: str | None
    reason: RouteReason
    detail: str | None = None
    fallback_cause: FallbackCause | None = None
    classifier_answer: str | None = None
    classifier_latency_ms: float | None = None
    confidence: float | None = None


def with_confidence(decision: RouteDecision, guess: IntentGuess | None) -> RouteDecision:
    """The decision with the trained stage's probability, when the stage was asked."""
    return decision if guess is None else replace(decision, confidence=guess.confidence)


def parse_classifier_answer(answer: str, names: Sequence[str]) -> str | None:
    """The agent named in a model's answer, or None. Tolerant of case, quotes, punctuation, a
    sentence around the name or JSON; strict about meaning: exactly one known name must appear."""
    cleaned = answer.strip().strip("`'\".,:;!* \n").lower()
    if cleaned in names:
        return cleaned
    found = {n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", answer.lower())}
    return found.pop() if len(found) == 1 else None


def classifier_schema(names: Sequence[str]) -> dict[str, Any]:
    """The JSON schema of the classifier's answer: `{"agent": <one of names>}` and nothing else
    (OpenAI's strict mode wants every property required and no additional ones)."""
    return {
        "title": "route",
        "type": "object",
        "properties": {"agent": {"type": "string", "enum": list(names)}},
        "required": ["agent"],
        "additionalProperties": False,
    }


def parse_structured_answer(answer: str, names: Sequence[str]) -> tuple[str | None, AnswerForm]:
    """The agent in a classifier answer, and how it was read.

    A JSON object (optionally in a ```json fence) is the structured answer: its `agent` must be
    one of `names` (any case, surrounding spaces ignored), else the answer is invalid, even if a
    name appears elsewhere in it. Anything else (an engine that ignored the schema, a bare
    name) goes to the tolerant `parse_classifier_answer`.
    """
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            agent = parsed.get("agent")
            if isinstance(agent, str) and agent.strip().lower() in names:
                return agent.strip().lower(), "json"
            return None, "json"
    return parse_classifier_answer(answer, names), "text"


class Router:
    """Plain class; the Ray actor wraps it. `classifier` is the engine the classifier asks (None:
    no classifier). The engine belongs to the caller, who closes it."""

    def __init__(
        self,
        config: AgentsConfig,
        classifier: ChatEngine | None = None,
        *,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._config = config
        self._agents = {a.name: a for a in config.agents}
        self._names = tuple(self._agents)
        self._classifier = classifier if config.router.classifier else None
        self._monotonic = monotonic
        self._commands = {c: a.name for a in config.agents for c in a.routing.commands}
        self._keywords = {
            a.name: [(k, _phrase_regex(k)) for k in a.routing.keywords] for a in config.agents
        }
        self._patterns = {
            a.name: [re.compile(p) for p in a.routing.patterns] for a in config.agents
        }
        self._system_prompt = _classifier_prompt(config.agents)
        self._schema = classifier_schema(self._names)
        self._threshold = config.router.trained_threshold
        self._intents: IntentModel | None = (
            train_intent_model(training_samples(config.agents)) if config.trained else None
        )

    @property
    def agent_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def intent_model(self) -> IntentModel | None:
        """The trained stage's model (None when the stage is off)."""
        return self._intents

    async def route(self, request: RouteRequest) -> RouteDecision:
        decision, guess = self.local(request)
        if decision is None:
            decision = with_confidence(await self.classify(request), guess)
        count_route(decision)
        return decision

    def local(self, request: RouteRequest) -> tuple[RouteDecision | None, IntentGuess | None]:
        """The steps without I/O: the rules, then the trained stage. Returns the decision when
        one of them decides (else None: the classifier or the fallback decides), and the
        trained stage's guess when it was asked. Not counted."""
        decision = self.rules(request)
        if decision is not None:
            return decision, None
        guess = self.trained(request)
        if guess is not None and guess.confidence >= self._threshold:
            detail = guess.detail()
            return RouteDecision(guess.agent, "trained", detail, confidence=guess.confidence), guess
        return None, guess

    def trained(self, request: RouteRequest) -> IntentGuess | None:
        """The trained stage alone, whatever the threshold: its guess for the turn's text (all
        its messages), or None when the stage is off, there is no text, or no learnt n-gram
        occurs in it (an emoji alone)."""
        text = "\n".join(t.strip() for t in request.texts if t.strip())
        if self._intents is None or not text:
            return None
        return self._intents.predict(text)

    # --- explicit rules ----------------------------------------------------------------------

    def rules(self, request: RouteRequest) -> RouteDecision | None:
        """The explicit rules alone (handoff, command, interactive, keyword, pattern, sticky):
        their decision, or None when none applies and the classifier would be asked."""
        if request.handoff:
            return RouteDecision(None, "handoff", "a person has taken over this chat")
        newest_first = request.texts[::-1]
        for text in newest_first:
            decision = self._command(text)
            if decision:
                return decision
        for reply_id in request.interactive_ids[::-1]:
            for agent in self._config.agents:
                prefix = next(
                    (p for p in agent.routing.interactive_prefixes if reply_id.startswith(p)), None
                )
                if prefix is not None:
                    return RouteDecision(agent.name, "interactive", reply_id)
        joined = "\n".join(request.texts)
        return (
            self._keyword(joined, request.current_agent)
            or self._pattern(newest_first)
            or self._sticky(request)
        )

    def _command(self, text: str) -> RouteDecision | None:
        words = text.strip().split()
        if not words or not words[0].startswith("/"):
            return None
        command = words[0].lower()
        if command == AGENT_COMMAND:
            target = words[1].lower() if len(words) > 1 else None
            if target in self._agents:
                return RouteDecision(target, "command", f"{AGENT_COMMAND} {target}")
            return None  # `/agent` alone or an unknown name: let the other rules decide
        agent = self._commands.get(command)
        return RouteDecision(agent, "command", command) if agent else None

    def _keyword(self, text: str, current: str | None) -> RouteDecision | None:
        """The agent with the most distinct keywords in the text; ties go to the current agent,
        then to the agent declared first."""
        best: tuple[int, str, list[str]] | None = None
        for name in self._names:
            hits = [k for k, regex in self._keywords[name] if regex.search(text)]
            if not hits:
                continue
            score = len(hits)
            if best is None or score > best[0] or (score == best[0] and name == current):
                best = (score, name, hits)
        if best is None:
            return None
        return RouteDecision(best[1], "keyword", ", ".join(best[2]))

    def _pattern(self, texts: Sequence[str]) -> RouteDecision | None:
        for text in texts:
            for name in self._names:
                for regex in self._patterns[name]:
                    if regex.search(text):
                        return RouteDecision(name, "pattern", regex.pattern)
        return None

    def _sticky(self, request: RouteRequest) -> RouteDecision | None:
        current = request.current_agent
        if current is None or current not in self._agents:
            return None  # a chat whose agent was removed from the config is routed afresh
        limit = self._config.router.sticky_idle_s
        if request.idle_s is not None and request.idle_s >= limit:
            return None
        return RouteDecision(current, "sticky")

    # --- classifier, then fallback --------------------------------------------------------------

    async def classify(self, request: RouteRequest) -> RouteDecision:
        """The classifier alone (then the fallback), skipping the rules and the trained stage:
        what `route` does when neither decides. Not counted (benchmarks call it directly)."""
        if self._classifier is None:
            return self._fallback("disabled")
        if len(self._names) == 1:
            return self._fallback("single_agent")
        text = "\n".join(t.strip() for t in request.texts if t.strip())
        if not any(c.isalnum() for c in text):
            # Nothing to read: no text (an image without caption), or no word in it (an emoji
            # or "??" alone: a reaction, not a request to classify). The default agent answers.
            return self._fallback("no_text")
        text = text[-_CLASSIFIER_MAX_INPUT_CHARS:]
        messages = [ChatMessage.system(self._system_prompt), ChatMessage.user(text)]
        timeout = self._config.router.classifier_timeout_s
        started = self._monotonic()
        try:
            async with asyncio.timeout(timeout):
                reply = await metered(
                    getattr(self._classifier, "name", None) or "unknown",
                    self._classifier.chat(
                        messages,
                        max_tokens=_CLASSIFIER_MAX_TOKENS,
                        temperature=0.0,  # the likeliest name: a message routes the same way
                        response_schema=self._schema,
                        timeout_s=timeout,
                    ),
                )
        except (TimeoutError, LLMTimeout):
            return self._fallback("timeout", f"no answer within {timeout} s")
        except Exception as exc:  # any engine failure: routing must still decide
            ids = log_ids(chat=request.chat)
            log.warning("router: classifier failed: %r", exc, extra=ids)
            return self._fallback("error", f"{type(exc).__name__}: {exc}")
        latency_ms = (self._monotonic() - started) * 1000.0
        agent, form = parse_structured_answer(reply.content, self._names)
        if agent is None:
            log.info("router: classifier answered %r, not an agent name", reply.content[:200])
            return self._fallback("invalid_answer", None, reply.content, latency_ms)
        return RouteDecision(agent, "classifier", form, None, reply.content, latency_ms)

    def _fallback(
        self,
        cause: FallbackCause,
        detail: str | None = None,
        answer: str | None = None,
        latency_ms: float | None = None,
    ) -> RouteDecision:
        agent = self._config.router.default_agent
        return RouteDecision(agent, "fallback", detail, cause, answer, latency_ms)


def _phrase_regex(phrase: str) -> re.Pattern[str]:
    """A keyword as whole words: `open` matches "are you open?" but not "opener"."""
    words = (re.escape(w) for w in phrase.split())
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def _classifier_prompt(agents: Sequence[AgentSpec]) -> str:
    """Short on purpose: of the prompts measured with SmolLM2-135M (docs/router.md) the short one
    did best, and a fixed prompt is a prefix llama.cpp and vLLM evaluate once and then reuse."""
    lines = "\n".join(f"- {a.name}: {' '.join(a.description.split())}" for a in agents)
    return (
        "Pick the agent that should answer the customer's WhatsApp message.\n"
        f"Agents:\n{lines}\n"
        'Reply with JSON: {"agent": "<name>"}'
    )


def count_route(decision: RouteDecision) -> None:
    """`whatsray_routes_total`: every decision, wherever it was made."""
    metrics.routes.inc(
        agent=decision.agent or "none",
        reason=decision.reason,
        fallback_cause=decision.fallback_cause or "",
    )
