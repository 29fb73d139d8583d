"""The business number a route sends from or lists for (`phone_number_id`), checked against the
numbers this app serves: an unknown one is a 422 naming it and the served ones, never an empty
page that looks like "nothing there"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Query

from whatsray.admin.guard import AdminProblem

__all__ = ["NumberFilter", "served_number"]

UNKNOWN_NUMBER = "unknown_phone_number_id"

NumberFilter = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        description="Only this business number's (one of the app's phone number ids).",
    ),
]


def served_number(
    numbers: Sequence[str], given: str | None, loc: tuple[str, ...], *, verb: str = "serves"
) -> str | None:
    """`given` if the app serves it (None stays None: every number); a 422 at `loc` otherwise."""
    if given is None or given in numbers:
        return given
    raise AdminProblem.invalid(
        loc,
        f"unknown business number {given[:64]!r}; this app {verb} {', '.join(numbers)}",
        UNKNOWN_NUMBER,
    )
