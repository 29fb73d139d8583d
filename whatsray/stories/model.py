"""The story file format (docs/stories.md): YAML with `stories:`, each a name, an optional user
number and a list of steps. Every step is a mapping with exactly one key, its kind.

Validation is strict (pydantic, unknown keys are errors) and happens for every file before any
story runs: a problem is a `StoryFileError` naming the file, the story and the step index.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

__all__ = [
    "EXPECTATIONS",
    "USER_STEPS",
    "Step",
    "Story",
    "StoryFileError",
    "load_stories",
    "parse_duration",
]


class StoryFileError(ValueError):
    """A story file that cannot be run; the message names the file, story and step."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Choice(_Strict):
    """A button or list row given in full (`{id, title}`), not looked up in a bot message."""

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str | None = None


class Media(_Strict):
    type: Literal["image", "video", "audio", "document", "sticker"] = "image"
    caption: str | None = None
    filename: str | None = None


class Location(_Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = None
    address: str | None = None


class ReplyCheck(_Strict):
    equals: str | None = None
    contains: str | None = None
    matches: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ReplyCheck:
        given = [k for k in ("equals", "contains", "matches") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of equals, contains, matches")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"matches: not a regular expression ({exc})") from None
        return self


class ToolCheck(_Strict):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)  # a subset of the call's arguments


class ReminderCheck(_Strict):
    in_: str | float | None = Field(default=None, alias="in")
    at: str | None = None  # a local date-time, `2030-01-07T11:00` (UTC unless it has an offset)
    text: str | None = None  # the reminder's text contains this

    @model_validator(mode="after")
    def _check(self) -> ReminderCheck:
        if self.in_ is not None:
            parse_duration(self.in_)
        if self.in_ is not None and self.at is not None:
            raise ValueError("give in or at, not both")
        return self


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: str | float) -> float:
    """`2h`, `90s`, `1h30m`, `1d`, or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = str(value).strip().replace(" ", "")
    parts = _DURATION.findall(text)
    if not text or "".join(a + u for a, u in parts) != text:
        raise ValueError(f"not a duration: {value!r} (write it like 90s, 2h, 1h30m or 1d)")
    return sum(float(amount) * _UNITS[unit] for amount, unit in parts)


USER_STEPS = ("user", "button", "list", "media", "location", "wait", "pause")
EXPECTATIONS = ("agent", "reply", "buttons", "tool", "handoff", "reminder", "no_reply")

# What each kind's value must be.
_KINDS: dict[str, TypeAdapter[Any]] = {
    "user": TypeAdapter(Annotated[str, Field(min_length=1)]),
    "button": TypeAdapter(Annotated[str, Field(min_length=1)] | Choice),
    "list": TypeAdapter(Annotated[str, Field(min_length=1)] | Choice),
    "media": TypeAdapter(Media),
    "location": TypeAdapter(Location),
    "wait": TypeAdapter(str | float),
    "pause": TypeAdapter(str | float),
    "agent": TypeAdapter(Annotated[str, Field(min_length=1)]),
    "reply": TypeAdapter(ReplyCheck),
    "buttons": TypeAdapter(list[str]),
    "tool": TypeAdapter(Annotated[str, Field(min_length=1)] | ToolCheck),
    "handoff": TypeAdapter(bool),
    "reminder": TypeAdapter(Literal[True] | ReminderCheck),
    "no_reply": TypeAdapter(Literal[True]),
}

# The kinds with a short (string or `true`) and a mapping form.
_MAPPING_FORM: dict[str, TypeAdapter[Any]] = {
    "button": TypeAdapter(Choice),
    "list": TypeAdapter(Choice),
    "tool": TypeAdapter(ToolCheck),
    "reminder": TypeAdapter(ReminderCheck),
}


class Step(_Strict):
    """One step: its kind (a key of the file) and its validated value."""

    kind: str
    value: Any

    @property
    def is_user_step(self) -> bool:
        return self.kind in USER_STEPS

    def describe(self) -> str:
        value = (
            self.value.model_dump(by_alias=True, exclude_none=True)
            if isinstance(self.value, BaseModel)
            else self.value
        )
        return f"{self.kind}: {value}"


class Story(_Strict):
    name: str
    user: str | None = None
    steps: tuple[Step, ...]
    file: str = ""


class _StoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    user: str | None = Field(default=None, pattern=r"^\+?\d{6,15}$")
    steps: list[Any] = Field(min_length=1)


class _FileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stories: list[Any] = Field(min_length=1)


def _problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _step(raw: Any) -> Step:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ValueError(
            "a step is a mapping with one key, its kind (e.g. `- user: hi`, `- agent: faq`)"
        )
    [(kind, value)] = raw.items()
    adapter = _KINDS.get(str(kind))
    if adapter is None:
        known = ", ".join([*USER_STEPS, *EXPECTATIONS])
        raise ValueError(f"unknown step kind {kind!r} (known: {known})")
    if isinstance(value, dict) and kind in _MAPPING_FORM:  # its errors, not the string form's
        adapter = _MAPPING_FORM[str(kind)]
    try:
        parsed = adapter.validate_python(value)
    except ValidationError as exc:
        raise ValueError(f"{kind}: {_problem(exc)}") from None
    if kind in ("wait", "pause"):
        parsed = parse_duration(parsed)
    return Step(kind=str(kind), value=parsed)


def parse_stories(data: Any, source: str) -> list[Story]:
    """The stories of one file's parsed YAML; `StoryFileError` for the first problem."""
    try:
        file = _FileIn.model_validate(data)
    except ValidationError as exc:
        raise StoryFileError(f"{source}: {_problem(exc)}") from None
    stories: list[Story] = []
    names: set[str] = set()
    for number, raw in enumerate(file.stories, start=1):
        label = raw.get("name") if isinstance(raw, dict) else None
        where = f"{source}: story {label!r}" if label else f"{source}: story #{number}"
        try:
            story = _StoryIn.model_validate(raw)
        except ValidationError as exc:
            raise StoryFileError(f"{where}: {_problem(exc)}") from None
        if story.name in names:
            raise StoryFileError(f"{where}: two stories of this file have this name")
        names.add(story.name)
        steps = []
        for index, step in enumerate(story.steps, start=1):
            try:
                steps.append(_step(step))
            except ValueError as exc:
                raise StoryFileError(f"{where}, step {index}: {exc}") from None
        if not any(s.is_user_step for s in steps):
            raise StoryFileError(f"{where}: no user step (user, button, list, media, location)")
        user = story.user.lstrip("+") if story.user else None
        stories.append(Story(name=story.name, user=user, steps=tuple(steps), file=source))
    return stories


def story_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files to run: each file given, and the `*.yaml`/`*.yml` of each folder (not its
    subfolders, so `tests/stories` leaves `tests/stories/smollm2` out), sorted."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            files.extend(f for f in found if f.name not in _NOT_STORIES)
        elif path.is_file():
            files.append(path)
        else:
            raise StoryFileError(f"{path}: no such file or folder")
    if not files:
        raise StoryFileError(f"no story files in {', '.join(str(p) for p in paths)}")
    return files


# Configuration files that may sit beside the stories (an engines overlay for `--engines`).
_NOT_STORIES = frozenset({"engines.yaml", "agents.yaml"})


def load_stories(paths: Sequence[str | Path]) -> list[Story]:
    """Every story of every file, validated; nothing runs if one file is bad."""
    stories: list[Story] = []
    for file in story_files(paths):
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise StoryFileError(f"{file}: cannot read the file ({exc})") from None
        except yaml.YAMLError as exc:
            raise StoryFileError(f"{file}: not valid YAML ({exc})") from None
        stories.extend(parse_stories(data, str(file)))
    return stories
