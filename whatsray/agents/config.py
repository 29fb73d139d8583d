"""`configs/agents.yaml`: the agents, the engines they use, and how turns are routed to them.

`load_agents_config(path)` reads and validates the file into frozen values. Every problem found
(unknown policy, unknown engine reference, duplicate agent, missing knowledge file, invalid regex,
unknown tool, a tool whose permission the agent lacks, a typo in a field name...) is reported in
one `AgentsConfigError` whose lines name the agent and the field, so a bad file is fixed in one go.
The reference is docs/agents.md (tools: docs/tools.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from whatsray.agents.examples import DEFAULT_TRAINED_THRESHOLD, check_examples, example_clashes
from whatsray.agents.knowledge import DEFAULT_MIN_SCORE
from whatsray.agents.replies import DEFAULT_APOLOGY, DEFAULT_EMPTY_REPLY, DEFAULT_UNKNOWN_REPLY
from whatsray.llm.factory import ENGINES
from whatsray.tools.registry import BUILTIN_TOOLS, ToolRegistry

__all__ = [
    "AGENT_COMMAND",
    "DEFAULT_HANDOFF_REPLY",
    "KNOWN_ENGINE_KINDS",
    "KNOWN_PERMISSIONS",
    "KNOWN_TOOLS",
    "AgentSpec",
    "AgentsConfig",
    "AgentsConfigError",
    "BackpressureSpec",
    "DoubleTextingSpec",
    "EngineSpec",
    "KnowledgeSpec",
    "RouterSpec",
    "RoutingRules",
    "load_agents_config",
    "parse_agents_config",
]

KNOWN_ENGINE_KINDS = frozenset(ENGINES)
KNOWN_TOOLS: frozenset[str] = frozenset(BUILTIN_TOOLS.names)
KNOWN_PERMISSIONS: frozenset[str] = BUILTIN_TOOLS.known_permissions
DEFAULT_WAIT_NOTICE = "One moment please, I'm on it."
DEFAULT_HANDOFF_REPLY = (
    "Thanks for your patience. I've passed this chat to a person from our team, who will answer "
    "you here soon."
)
AGENT_COMMAND = "/agent"  # built in: `/agent NAME` moves the chat to that agent
DEFAULT_REJECT_REPLY = "One moment please, I'm still answering your previous message."

_NAME = r"^[a-z][a-z0-9_-]{0,39}$"


class _Strict(BaseModel):
    # Our own file: a misspelt field is an error, not silently ignored.
    model_config = ConfigDict(frozen=True, extra="forbid")


class DoubleTextingSpec(_Strict):
    """What the session does with messages that arrive while a turn is pending or running.

    Field names match `whatsray.session.policies.DoubleTextingPolicy` (`policy` is its `mode`).
    """

    policy: Literal["coalesce", "enqueue", "reject", "interrupt"] = "coalesce"
    quiet_period_s: float = Field(1.5, ge=0)
    max_wait_s: float = Field(6.0, ge=0)
    reject_reply: str = Field(DEFAULT_REJECT_REPLY, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """`double_texting: enqueue` is short for `double_texting: {policy: enqueue}`."""
        if isinstance(data, str):
            data = {"policy": data}
        if isinstance(data, dict) and isinstance(data.get("policy"), str):
            data = {**data, "policy": data["policy"].strip().lower()}
        return data


class RoutingRules(_Strict):
    """The explicit rules that send a turn to this agent (docs/agents.md, "Routing order")."""

    commands: tuple[str, ...] = ()  # "/faq": a message starting with it
    keywords: tuple[str, ...] = ()  # whole words or phrases, any case
    patterns: tuple[str, ...] = ()  # Python regexes, searched in the text (use (?i) for any case)
    interactive_prefixes: tuple[str, ...] = ()  # "faq:": button/list reply ids starting with it

    @field_validator("commands")
    @classmethod
    def _commands(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for command in value:
            word = command.strip().lower()
            word = word if word.startswith("/") else "/" + word
            if not re.fullmatch(r"/[a-z0-9_-]+", word):
                raise ValueError(f"{command!r} is not a command (one word, like /help)")
            out.append(word)
        return tuple(out)

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(k.strip().lower() for k in value)
        if any(not k for k in out):
            raise ValueError("a keyword is empty")
        return out

    @field_validator("interactive_prefixes")
    @classmethod
    def _prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not p for p in value):
            raise ValueError("an interactive prefix is empty")
        return value


class KnowledgeSpec(_Strict):
    """The FAQ knowledge file and how strictly it is matched. `file` is resolved on load."""

    file: Path
    min_score: float = Field(DEFAULT_MIN_SCORE, ge=0)
    top_k: int = Field(3, ge=1, le=20)
    unknown_reply: str = Field(DEFAULT_UNKNOWN_REPLY, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """`knowledge: knowledge/faq.md` is short for `knowledge: {file: knowledge/faq.md}`."""
        return {"file": data} if isinstance(data, str) else data


class EngineSpec(BaseModel):
    """An entry of `engines:`: the engine kind plus its own options, kept as given for the LLM
    layer to build the engine from (`options` holds everything but `engine` and `model`)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    key: str  # its name under `engines:`, which agents refer to
    engine: str = Field(min_length=1)
    model: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def as_dict(self) -> dict[str, Any]:
        """`{"engine": ..., "model": ..., **options}`, without the key: what
        `whatsray.llm.build_engine` reads."""
        out: dict[str, Any] = {"engine": self.engine, **self.options}
        if self.model is not None:
            out["model"] = self.model
        return out


class BackpressureSpec(_Strict):
    """What an agent does when inference is saturated (docs/agents.md, "Backpressure").

    Turns beyond `max_concurrent_turns` (per agent worker) wait in a queue that is fair across
    chats. A turn still running after `notice_after_s` while inference is saturated sends
    `notice_text` once (null: never). With `fallback_engine` set, a turn that waited
    `fallback_after_s` for a slot, or whose engine is down, runs on that engine instead.
    """

    max_concurrent_turns: int | None = Field(None, ge=1, le=4096)  # None: the engine's capacity
    notice_after_s: float | None = Field(8.0, gt=0)
    notice_text: str = Field(DEFAULT_WAIT_NOTICE, min_length=1)
    fallback_engine: str | None = None  # a key of `engines:`
    fallback_after_s: float = Field(10.0, ge=0)


class AgentSpec(_Strict):
    name: str = Field(pattern=_NAME)
    description: str = Field(min_length=1)  # what the classifier reads
    system_prompt: str = Field(min_length=1)
    engine: str  # a key of `engines:`
    model: str | None = None  # overrides the engine's model for this agent
    max_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    history_messages: int = Field(50, ge=0)
    timeout_s: float = Field(60.0, gt=0)  # one engine call; the turn never waits longer
    # The tool-calling loop (docs/tools.md): model rounds that may call tools, the time budget
    # of the loop (the closing reply without tools may take one more `timeout_s`), one tool call.
    max_tool_steps: int = Field(4, ge=1, le=20)
    turn_timeout_s: float = Field(120.0, gt=0)
    tool_timeout_s: float = Field(10.0, gt=0)
    # `required`: the first model round must call one of the agent's tools (engines with
    # constrained decoding, vLLM, then always produce a valid call); later rounds are `auto`.
    first_tool_choice: Literal["auto", "required"] = "auto"
    double_texting: DoubleTextingSpec = DoubleTextingSpec()
    routing: RoutingRules = RoutingRules()
    tools: tuple[str, ...] = ()  # names from the tool registry, offered to the model in order
    permissions: tuple[str, ...] = ()  # what this agent's tools may do beyond the turn's chat
    knowledge: KnowledgeSpec | None = None
    greeting: str | None = None  # the reply to a bare command (`/faq`), without the model
    apology: str = Field(DEFAULT_APOLOGY, min_length=1)  # the reply when the engine fails
    empty_reply: str = Field(DEFAULT_EMPTY_REPLY, min_length=1)  # when the model says nothing
    # The reply of a turn that handed the chat to a person, when the model wrote none.
    handoff_reply: str = Field(DEFAULT_HANDOFF_REPLY, min_length=1)
    backpressure: BackpressureSpec = BackpressureSpec()
    # Short messages this agent should get: the router's trained stage (docs/router.md).
    examples: tuple[str, ...] = ()

    @field_validator("examples")
    @classmethod
    def _examples(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_examples(value)

    @field_validator("tools", "permissions")
    @classmethod
    def _no_repeats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"listed more than once: {', '.join(repeated)}")
        return value


class RouterSpec(_Strict):
    default_agent: str
    classifier: bool = True
    classifier_engine: str | None = None  # a key of `engines:`; None: the default agent's
    classifier_timeout_s: float = Field(5.0, gt=0)
    sticky_idle_s: float = Field(1800.0, ge=0)  # the current agent keeps the chat this long
    trained: bool | None = None  # the trained stage; None: on when an agent has `examples`
    trained_threshold: float = Field(DEFAULT_TRAINED_THRESHOLD, gt=0, lt=1)


class AgentsConfig(BaseModel):
    """The validated file. Agents keep the file's order (it breaks routing ties)."""

    model_config = ConfigDict(frozen=True)

    engines: Mapping[str, EngineSpec]
    agents: tuple[AgentSpec, ...]
    router: RouterSpec
    source: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)

    def agent(self, name: str) -> AgentSpec:
        for spec in self.agents:
            if spec.name == name:
                return spec
        raise KeyError(f"no agent named {name!r} (known: {', '.join(self.names)})")

    def engine_for(self, agent: str) -> EngineSpec:
        """The engine spec of an agent, with the agent's `model` override applied."""
        spec = self.agent(agent)
        engine = self.engines[spec.engine]
        return engine if spec.model is None else engine.model_copy(update={"model": spec.model})

    def with_engine(self, engine: str) -> AgentsConfig:
        """Every agent (and the classifier) on one engine of `engines:`: e.g. `scripted` for
        tests and benchmarks, whatever the file says."""
        if engine not in self.engines:
            known = ", ".join(sorted(self.engines))
            raise AgentsConfigError(
                self.source or "agents",
                [f"engine override {engine!r} is not in engines: ({known})"],
            )
        # The fallback goes too: an override runs everything on one engine (no keys needed).
        agents = tuple(
            a.model_copy(
                update={
                    "engine": engine,
                    "model": None,
                    "backpressure": a.backpressure.model_copy(update={"fallback_engine": None}),
                }
            )
            for a in self.agents
        )
        router = self.router.model_copy(update={"classifier_engine": engine})
        return self.model_copy(update={"agents": agents, "router": router})

    def fallback_engine_for(self, agent: str) -> EngineSpec | None:
        """The engine an agent's turns fall back to when inference is saturated, if any."""
        name = self.agent(agent).backpressure.fallback_engine
        return None if name is None else self.engines[name]

    def engines_in_use(self) -> dict[str, EngineSpec]:
        """The `engines:` entries that agents, their fallbacks or the classifier use."""
        used = {a.engine for a in self.agents}
        used |= {fb for a in self.agents if (fb := a.backpressure.fallback_engine) is not None}
        classifier = self.classifier_engine()
        if classifier is not None:
            used.add(classifier.key)
        return {key: spec for key, spec in self.engines.items() if key in used}

    @property
    def trained(self) -> bool:
        """Whether the router's trained stage runs: as `router.trained` says, else when any
        agent has examples; never with one agent (nothing to choose)."""
        wanted = self.router.trained
        if wanted is None:
            wanted = any(a.examples for a in self.agents)
        return wanted and len(self.agents) > 1

    def classifier_engine(self) -> EngineSpec | None:
        """The classifier's engine, or None when the classifier is off."""
        if not self.router.classifier:
            return None
        name = self.router.classifier_engine or self.agent(self.router.default_agent).engine
        return self.engines[name]


class AgentsConfigError(ValueError):
    """A bad agents file. `problems` has one line per problem, each naming the agent and field."""

    def __init__(self, source: str, problems: Collection[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = f"{source}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{source}: {len(self.problems)} problems:\n{lines}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.problems))


def load_agents_config(
    path: str | Path,
    *,
    known_tools: Collection[str] | None = None,
    known_engine_kinds: Collection[str] = KNOWN_ENGINE_KINDS,
    tool_registry: ToolRegistry = BUILTIN_TOOLS,
) -> AgentsConfig:
    """Read and validate an agents file. Knowledge paths are relative to the file's folder."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgentsConfigError(str(file), [f"cannot read the file ({exc})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AgentsConfigError(str(file), [f"not valid YAML ({exc})"]) from None
    return parse_agents_config(
        data,
        base_dir=file.resolve().parent,
        source=str(file),
        known_tools=known_tools,
        known_engine_kinds=known_engine_kinds,
        tool_registry=tool_registry,
    )


def parse_agents_config(
    data: Any,
    *,
    base_dir: str | Path = ".",
    source: str = "agents config",
    known_tools: Collection[str] | None = None,
    known_engine_kinds: Collection[str] = KNOWN_ENGINE_KINDS,
    tool_registry: ToolRegistry = BUILTIN_TOOLS,
) -> AgentsConfig:
    """Validate already-parsed YAML/JSON (a mapping). Raises `AgentsConfigError`.

    Tool names and permissions are checked against `tool_registry` (the built-in tools by
    default); `known_tools` adds names known elsewhere, whose permissions are not checked."""
    checker = _Checker(Path(base_dir), set(known_engine_kinds), tool_registry, known_tools)
    config = checker.check(data)
    if checker.problems or config is None:
        raise AgentsConfigError(source, checker.problems or ["empty configuration"])
    return config.model_copy(update={"source": source})


class _Checker:
    """Validates piece by piece so that each problem is reported with the agent it belongs to."""

    def __init__(
        self,
        base_dir: Path,
        engine_kinds: set[str],
        registry: ToolRegistry,
        extra_tools: Collection[str] | None,
    ) -> None:
        self.base_dir = base_dir
        self.registry = registry
        self.tools = set(registry.names) | set(extra_tools or ())
        self.permissions = registry.known_permissions
        self.engine_kinds = engine_kinds
        self.problems: list[str] = []
        self.declared: set[str] = set()  # agent names, valid agents or not

    def _pydantic(self, where: str, exc: ValidationError) -> None:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "(itself)"
            self.problems.append(f"{where}, field '{field}': {error['msg']}")

    def check(self, data: Any) -> AgentsConfig | None:
        if not isinstance(data, Mapping):
            self.problems.append("expected a mapping with `engines`, `router` and `agents`")
            return None
        for key in data:
            if key not in ("engines", "router", "agents"):
                self.problems.append(
                    f"unknown top-level key {key!r} (known: engines, router, agents)"
                )
        engines = self._engines(data.get("engines"))
        agents = self._agents(data.get("agents"), engines)
        router = self._router(data.get("router"), engines, agents)
        if router is None or self.problems:
            return None
        return AgentsConfig(engines=engines, agents=tuple(agents), router=router)

    def _engines(self, raw: Any) -> dict[str, EngineSpec]:
        if not isinstance(raw, Mapping) or not raw:
            self.problems.append(
                "`engines` must map engine names to specs, e.g. local: {engine: llamacpp}"
            )
            return {}
        engines = {}
        for name, body in raw.items():
            where = f"engine {name!r}"
            if not isinstance(body, Mapping):
                self.problems.append(f"{where}: expected a mapping like {{engine: scripted}}")
                continue
            try:
                spec = EngineSpec.model_validate({**body, "key": str(name)})
            except ValidationError as exc:
                self._pydantic(where, exc)
                continue
            if spec.engine not in self.engine_kinds:
                known = ", ".join(sorted(self.engine_kinds))
                self.problems.append(
                    f"{where}, field 'engine': unknown engine kind {spec.engine!r} (known: {known})"
                )
            elif spec.engine in ENGINES:
                # The LLM layer's own schema: a typo in an engine option fails here, at load.
                try:
                    ENGINES[spec.engine][0].model_validate(spec.as_dict())
                except ValidationError as exc:
                    self._pydantic(where, exc)
            engines[str(name)] = spec
        return engines

    def _agents(self, raw: Any, engines: Mapping[str, EngineSpec]) -> list[AgentSpec]:
        if not isinstance(raw, list) or not raw:
            self.problems.append("`agents` must be a non-empty list of agents")
            return []
        agents: list[AgentSpec] = []
        for index, body in enumerate(raw):
            name = body.get("name") if isinstance(body, Mapping) else None
            where = f"agent {name!r}" if isinstance(name, str) else f"agents[{index}]"
            if isinstance(name, str):
                self.declared.add(name)
            if not isinstance(body, Mapping):
                self.problems.append(f"{where}: expected a mapping")
                continue
            try:
                spec = AgentSpec.model_validate(dict(body))
            except ValidationError as exc:
                self._pydantic(where, exc)
                continue
            agents.append(self._agent_refs(spec, where, engines))
        self._unique(agents)
        return agents

    def _agent_refs(
        self, spec: AgentSpec, where: str, engines: Mapping[str, EngineSpec]
    ) -> AgentSpec:
        """Check what the schema cannot: references, regexes, files. Returns the resolved spec."""
        engine = engines.get(spec.engine)
        if engine is None:
            known = ", ".join(engines) or "none"
            self.problems.append(
                f"{where}, field 'engine': unknown engine {spec.engine!r} (engines: {known})"
            )
        elif spec.model is not None and engine.engine == "vllm":
            self.problems.append(
                f"{where}, field 'model': engine {spec.engine!r} is a vLLM deployment serving "
                "one model; configure the model on the engine (or declare another engine)"
            )
        elif (
            spec.model is not None
            and engine.engine in ENGINES
            and "model" not in ENGINES[engine.engine][0].model_fields
        ):
            self.problems.append(
                f"{where}, field 'model': engine {spec.engine!r} ({engine.engine}) takes no "
                "model name; configure its model on the engine"
            )
        fallback = spec.backpressure.fallback_engine
        if fallback is not None and fallback not in engines:
            self.problems.append(
                f"{where}, field 'backpressure.fallback_engine': unknown engine {fallback!r}"
            )
        elif fallback is not None and fallback == spec.engine:
            self.problems.append(
                f"{where}, field 'backpressure.fallback_engine': {fallback!r} is the agent's own "
                "engine; a fallback must be another one"
            )
        for i, pattern in enumerate(spec.routing.patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                self.problems.append(
                    f"{where}, field 'routing.patterns.{i}': invalid regex {pattern!r} ({exc})"
                )
        for command in spec.routing.commands:
            if command == AGENT_COMMAND:
                self.problems.append(
                    f"{where}, field 'routing.commands': {AGENT_COMMAND} is built in"
                )
        self._tools(spec, where)
        if spec.knowledge is None:
            return spec
        file = spec.knowledge.file
        resolved = file if file.is_absolute() else (self.base_dir / file).resolve()
        if not resolved.is_file():
            self.problems.append(f"{where}, field 'knowledge.file': no such file: {resolved}")
        knowledge = spec.knowledge.model_copy(update={"file": resolved})
        return spec.model_copy(update={"knowledge": knowledge})

    def _tools(self, spec: AgentSpec, where: str) -> None:
        """Tool names exist; permissions exist; every listed tool's permissions are granted."""
        granted = set(spec.permissions)
        for permission in spec.permissions:
            if permission not in self.permissions:
                known = ", ".join(sorted(self.permissions)) or "none"
                self.problems.append(
                    f"{where}, field 'permissions': unknown permission {permission!r} "
                    f"(known: {known})"
                )
        for name in spec.tools:
            if name not in self.tools:
                known = ", ".join(sorted(self.tools)) or "none yet"
                self.problems.append(
                    f"{where}, field 'tools': unknown tool {name!r} (known: {known})"
                )
                continue
            tool = self.registry.get(name)
            for permission in sorted(tool.permissions - granted) if tool else ():
                self.problems.append(
                    f"{where}, field 'tools': tool {name!r} needs the permission "
                    f"{permission!r}, which the agent is not granted (add it to permissions)"
                )

    def _unique(self, agents: list[AgentSpec]) -> None:
        self.problems.extend(example_clashes(agents))
        for name, count in Counter(a.name for a in agents).items():
            if count > 1:
                self.problems.append(f"agent {name!r}, field 'name': declared {count} times")
        owners: dict[tuple[str, str], str] = {}
        for agent in agents:
            claims = [("routing.commands", c) for c in agent.routing.commands]
            claims += [
                ("routing.interactive_prefixes", p) for p in agent.routing.interactive_prefixes
            ]
            for claim in claims:
                other = owners.setdefault(claim, agent.name)
                if other != agent.name:
                    self.problems.append(
                        f"agent {agent.name!r}, field '{claim[0]}': {claim[1]!r} "
                        f"is already used by agent {other!r}"
                    )

    def _router(
        self, raw: Any, engines: Mapping[str, EngineSpec], agents: list[AgentSpec]
    ) -> RouterSpec | None:
        if not isinstance(raw, Mapping):
            self.problems.append("`router` must be a mapping with at least `default_agent`")
            return None
        try:
            router = RouterSpec.model_validate(dict(raw))
        except ValidationError as exc:
            self._pydantic("router", exc)
            return None
        names = self.declared | {a.name for a in agents}
        if names and router.default_agent not in names:
            self.problems.append(
                f"router, field 'default_agent': unknown agent {router.default_agent!r} "
                f"(agents: {', '.join(sorted(names))})"
            )
        if router.classifier_engine is not None and router.classifier_engine not in engines:
            self.problems.append(
                f"router, field 'classifier_engine': unknown engine {router.classifier_engine!r}"
            )
        return router
