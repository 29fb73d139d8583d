"""Agents' `examples:` (the trained stage's training messages): normalisation, validation, and
the training texts of an agents file. No scikit-learn or numpy here: the config loads this.

docs/router.md, "The trained stage" and "Writing examples".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

__all__ = [
    "DEFAULT_TRAINED_THRESHOLD",
    "MAX_EXAMPLE_CHARS",
    "check_examples",
    "description_sentences",
    "example_clashes",
    "example_key",
    "normalise",
    "training_samples",
]

# The default `router.trained_threshold`; why 0.4: docs/router.md, "Threshold".
DEFAULT_TRAINED_THRESHOLD = 0.4
MAX_EXAMPLE_CHARS = 500  # a short message; a paragraph would be a description
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")
_PUNCTUATION = re.compile(r"[^\w\s]")


class _Agent(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def examples(self) -> tuple[str, ...]: ...


def normalise(text: str) -> str:
    """Case- and accent-free text with single spaces: what the trained stage reads
    ("Öffnungszeiten" -> "offnungszeiten", "Straße" -> "strasse")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.split())


def example_key(text: str) -> str:
    """What makes two messages the same example: case, accents, spacing and punctuation aside."""
    return " ".join(_PUNCTUATION.sub(" ", normalise(text)).split())


def check_examples(value: Sequence[str]) -> tuple[str, ...]:
    """An agent's examples: non-empty strings, not too long, none listed twice (as
    `example_key` compares them). Spaces around each are trimmed. Raises ValueError."""
    out: list[str] = []
    seen: dict[str, str] = {}
    for index, example in enumerate(value):
        if not isinstance(example, str):
            raise ValueError(f"example {index} is not a string: {example!r}")
        text = " ".join(example.split())
        if not text or not example_key(text):
            raise ValueError(f"example {index} is empty (or punctuation only)")
        if len(text) > MAX_EXAMPLE_CHARS:
            raise ValueError(
                f"example {index} is {len(text)} characters long; keep examples to short "
                f"messages (at most {MAX_EXAMPLE_CHARS})"
            )
        first = seen.setdefault(example_key(text), text)
        if first is not text:
            raise ValueError(f"example {text!r} is listed twice (also as {first!r})")
        out.append(text)
    return tuple(out)


def example_clashes(agents: Iterable[_Agent]) -> list[str]:
    """One problem line per example that two agents both list."""
    owners: dict[str, str] = {}
    problems = []
    for agent in agents:
        for example in agent.examples:
            other = owners.setdefault(example_key(example), agent.name)
            if other != agent.name:
                problems.append(
                    f"agent {agent.name!r}, field 'examples': {example!r} is also an example "
                    f"of agent {other!r}; an example belongs to one agent"
                )
    return problems


def description_sentences(description: str) -> list[str]:
    """A description as training texts: each sentence (or clause after a colon or semicolon)."""
    flat = " ".join(description.split())
    return [s.strip() for s in _SENTENCE.split(flat) if s.strip()]


def training_samples(agents: Iterable[_Agent]) -> Mapping[str, tuple[str, ...]]:
    """`{agent: texts}` in file order: each agent's examples, then its description's sentences."""
    return {a.name: (*a.examples, *description_sentences(a.description)) for a in agents}
