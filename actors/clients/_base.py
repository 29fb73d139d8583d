"""What every client shares: the actor handle it calls."""

from __future__ import annotations

from typing import Any


class Client:
    """A client of one actor. Subclasses add exactly the methods their consumer needs, each one
    `calls.count(target, method)` and then `return await self._handle.<method>.remote(...)`.

    Picklable (a handle pickles), so a client may travel inside an actor's arguments.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._handle!r})"
