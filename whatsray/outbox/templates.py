"""Message templates: what the outbox sends instead of free text outside the 24-hour window.

WhatsApp delivers free-form messages only within 24 hours of the user's last message; after that
only an approved template reaches them (error 131047 otherwise). `configs/templates.yaml` names,
per *purpose* of a message, the template to send in its place:

```yaml
templates:
  reminder:                        # the purpose (see PURPOSES)
    name: reminder_v1              # the approved template's name at Meta
    language: en_US
    body: ["{text}"]               # the body's {{1}}, {{2}}... in order
    header: []                     # the header's text parameters (optional)
```

Parameter values are literal text with placeholders: `{text}` is the message that could not be
sent as free text (cut to 1,024 characters: Meta's limit for one parameter), `{user}` the
recipient (phone number or BSUID). `{{`/`}}` are literal braces. A template without `{text}` is
sent as is, and the free text is dropped (it stays in the chat's history).

A message's purpose is `OutboundItem.purpose`; None is an ordinary reply and uses `default`. A
purpose without its own template uses `default` too; with neither, the message is dead-lettered
`outside_window` as before.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from whatsray.whatsapp.errors import MessageValidationError
from whatsray.whatsapp.messages import TemplateComponent, TemplateMessage, TemplateParameter

__all__ = [
    "DEFAULT_PURPOSE",
    "EMPTY_TEMPLATES",
    "MAX_PARAMETER_CHARS",
    "PURPOSES",
    "TemplateSpec",
    "TemplatesConfig",
    "TemplatesConfigError",
    "free_text",
    "load_templates",
    "parse_templates",
]

DEFAULT_PURPOSE = "default"
# What a message may be sent for. `default` is the fallback for every other one (and replies).
PURPOSES = (
    DEFAULT_PURPOSE,
    "reply",
    "reminder",
    "greeting",
    "dead_letter_replay",
    "handoff_notice",
)
PLACEHOLDERS = ("text", "user")
MAX_PARAMETER_CHARS = 1024  # Meta: a text parameter of a template's body


class TemplatesConfigError(ValueError):
    """The templates file is unreadable or invalid; the message lists every problem."""


def _placeholders(value: str) -> list[str]:
    """The `{names}` in a parameter value (raises ValueError for a malformed one)."""
    return [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]


class TemplateSpec(BaseModel):
    """One approved template and how to fill its parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")
    language: str = Field(min_length=2, max_length=32, pattern=r"^[A-Za-z]{2,3}(_[A-Za-z0-9]+)?$")
    body: tuple[str, ...] = ()
    header: tuple[str, ...] = Field(default=(), max_length=1)

    @field_validator("body", "header")
    @classmethod
    def _check_parameters(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for index, value in enumerate(values):
            try:
                names = _placeholders(value)
            except ValueError as exc:
                raise ValueError(f"parameter {index + 1} ({value!r}): {exc}") from None
            unknown = [n for n in names if n not in PLACEHOLDERS]
            if unknown:
                raise ValueError(
                    f"parameter {index + 1} ({value!r}): unknown placeholder"
                    f" {{{unknown[0]}}} (known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
                )
            if not value.strip():
                raise ValueError(f"parameter {index + 1} is empty")
        return values

    @property
    def carries_text(self) -> bool:
        """Whether the free text goes into one of its parameters."""
        return any("text" in _placeholders(v) for v in (*self.header, *self.body))

    def graph_body(self, to: str, text: str | None) -> dict[str, Any]:
        """The Graph API send body of this template to `to`, filled with `text`."""
        cut = _cut(text or "")
        values = {"text": cut or "-", "user": to}
        components: list[TemplateComponent] = []
        if self.header:
            params = tuple(TemplateParameter.of_text(v.format(**values)) for v in self.header)
            components.append(TemplateComponent(type="header", parameters=params))
        if self.body:
            components.append(TemplateComponent.body(*(v.format(**values) for v in self.body)))
        message = TemplateMessage(
            to=to, name=self.name, language=self.language, components=tuple(components)
        )
        return message.to_graph_body()


def _cut(text: str) -> str:
    # Meta refuses newlines, tabs and 4+ spaces in a parameter (132000-ish errors): flatten them.
    flat = " ".join(text.split())
    if len(flat) <= MAX_PARAMETER_CHARS:
        return flat
    return flat[: MAX_PARAMETER_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class TemplatesConfig:
    """The templates by purpose. Empty: every message outside the window is dead-lettered."""

    by_purpose: Mapping[str, TemplateSpec]

    def for_purpose(self, purpose: str | None) -> TemplateSpec | None:
        """The template for `purpose` (None: a reply), else the default one, else None."""
        spec = self.by_purpose.get(purpose or "reply")
        return spec if spec is not None else self.by_purpose.get(DEFAULT_PURPOSE)

    def __len__(self) -> int:
        return len(self.by_purpose)


EMPTY_TEMPLATES = TemplatesConfig({})


def parse_templates(document: Any, source: str = "templates") -> TemplatesConfig:
    """Validate a parsed templates document (`{"templates": {purpose: spec}}`)."""
    if document is None:
        return EMPTY_TEMPLATES
    if not isinstance(document, dict) or set(document) - {"templates"}:
        raise TemplatesConfigError(
            f"{source}: the document must be a mapping with one key, 'templates'"
        )
    entries = document.get("templates") or {}
    if not isinstance(entries, dict):
        raise TemplatesConfigError(f"{source}: 'templates' must map a purpose to a template")
    problems: list[str] = []
    specs: dict[str, TemplateSpec] = {}
    for purpose, raw in entries.items():
        if purpose not in PURPOSES:
            problems.append(f"unknown purpose {purpose!r} (known: {', '.join(PURPOSES)})")
            continue
        if not isinstance(raw, dict):
            problems.append(f"purpose {purpose!r}: must be a mapping (name, language, body...)")
            continue
        try:
            spec = TemplateSpec.model_validate(raw)
            spec.graph_body("15550000000", "check")  # the rules of the Graph API, at load
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"]) or "template"
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(f"purpose {purpose!r}, field {where!r}: {message}")
            continue
        except MessageValidationError as exc:
            problems.append(f"purpose {purpose!r}: {exc}")
            continue
        specs[purpose] = spec
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        lines = "\n".join(f"  - {p}" for p in problems)
        raise TemplatesConfigError(f"{source}: {count}:\n{lines}")
    return TemplatesConfig(specs)


def load_templates(path: Path | str | None) -> TemplatesConfig:
    """Read and validate a templates file; None means no templates (a missing file is an
    error: a typo in the path must not silently turn every template off)."""
    if path is None:
        return EMPTY_TEMPLATES
    file = Path(path)
    try:
        document = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TemplatesConfigError(f"{file}: cannot read it: {exc}") from None
    return parse_templates(document, str(file))


def free_text(body: Mapping[str, Any]) -> str | None:
    """The words of a Graph send body (text, caption, interactive body), for `{text}`."""
    kind = body.get("type")
    content = body.get(kind) if isinstance(kind, str) else None
    if not isinstance(content, dict):
        return None
    if kind == "text":
        value = content.get("body")
    elif kind == "interactive":
        inner = content.get("body")
        value = inner.get("text") if isinstance(inner, dict) else None
    else:
        value = content.get("caption")
    return value if isinstance(value, str) else None
