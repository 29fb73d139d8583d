"""Settings of each business number (`WHATSRAY_NUMBERS`, docs/settings.md "Many numbers").

Meta gives every registered number its own throughput tier (80 msg/s by default, up to 1000),
and a number may have its own approved templates, so one app serving several numbers needs them
per number. `WHATSRAY_NUMBERS` is a JSON object keyed by phone number id; what a number leaves
out comes from the global settings (`WHATSRAY_THROUGHPUT_MPS`, `WHATSRAY_TEMPLATES_FILE`):

    {"1111": {"throughput_mps": 250, "templates_file": "configs/templates-shop2.yaml"},
     "2222": {"templates_file": null}}

`"templates_file": null` means that number has no templates (its messages outside the window
are dead-lettered `outside_window`). `whatsray.settings.Settings` holds the parsed overrides and
`Settings.number_settings(id)` answers a number's effective settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["NumberOverrides", "NumberSettings", "parse_numbers", "resolve_number_paths"]

_EXAMPLE = '{"1111": {"throughput_mps": 250, "templates_file": "configs/templates-shop2.yaml"}}'


class NumberOverrides(BaseModel):
    """What one number sets for itself; a field it leaves out is the global setting's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    throughput_mps: int | None = Field(default=None, ge=1, le=1000)
    templates_file: Path | None = None

    @property
    def sets_templates_file(self) -> bool:
        """Whether `templates_file` was given (null included: no templates for this number)."""
        return "templates_file" in self.model_fields_set


@dataclass(frozen=True, slots=True)
class NumberSettings:
    """One number's effective settings: its overrides over the global ones."""

    phone_number_id: str
    throughput_mps: int
    templates_file: Path | None

    @property
    def templates_path(self) -> str | None:
        """The templates file as the Outbox actor takes it (None: no templates)."""
        return str(self.templates_file) if self.templates_file is not None else None


def effective(
    phone_number_id: str,
    overrides: NumberOverrides | None,
    *,
    throughput_mps: int,
    templates_file: Path | None,
) -> NumberSettings:
    if overrides is None:
        return NumberSettings(phone_number_id, throughput_mps, templates_file)
    return NumberSettings(
        phone_number_id,
        overrides.throughput_mps if overrides.throughput_mps is not None else throughput_mps,
        overrides.templates_file if overrides.sets_templates_file else templates_file,
    )


def parse_numbers(value: Any, served: Sequence[str] | None) -> dict[str, NumberOverrides]:
    """`WHATSRAY_NUMBERS` (a JSON string, or a mapping given in code) as overrides by id.
    `served` are the phone number ids the app serves (None: unknown, not checked); every key
    must be one. Raises `ValueError` naming every problem (each bad key, each bad value)."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not valid JSON ({exc}); expected e.g. {_EXAMPLE}") from None
    if not isinstance(value, Mapping):
        raise ValueError(
            f"must be a JSON object keyed by phone number id, got {type(value).__name__};"
            f" e.g. {_EXAMPLE}"
        )
    problems: list[str] = []
    numbers: dict[str, NumberOverrides] = {}
    for key, raw in value.items():
        number = str(key)
        if not number.isdigit():
            problems.append(f"key {number[:64]!r} is not a phone number id (digits only)")
            continue
        if served is not None and number not in served:
            listed = f"served: {', '.join(served)}" if served else "unset: list every number there"
            problems.append(f"number {number!r} is not in WHATSRAY_PHONE_NUMBER_IDS ({listed})")
        try:
            numbers[number] = (
                raw if isinstance(raw, NumberOverrides) else NumberOverrides.model_validate(raw)
            )
        except ValidationError as exc:
            problems.extend(f"number {number!r}: {_problem(error)}" for error in exc.errors())
    if problems:
        raise ValueError("; ".join(problems))
    return numbers


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown field {where!r} (it takes throughput_mps, templates_file)"
    if error["type"] == "model_type":
        return 'must be an object like {"throughput_mps": 250}'
    return f"{where}: {error['msg']}"


def resolve_number_paths(numbers: Mapping[str, NumberOverrides]) -> dict[str, NumberOverrides]:
    """The overrides with every templates file absolute, as `serve_app.build_app` makes the
    global one: the actors that read them may start in another working directory."""
    return {
        number: overrides.model_copy(update={"templates_file": overrides.templates_file.resolve()})
        if overrides.templates_file is not None
        else overrides
        for number, overrides in numbers.items()
    }
