"""Make an actor handle look like the object the actor wraps.

Every actor here exposes one generic method, `call(method, *args, **kwargs)`, over an allowlist of
its object's public methods. `ActorProxy(handle)` turns `await proxy.record_inbound(event)` into
`await handle.call.remote("record_inbound", event)`, so the Ray-free code (the session hooks, the
outbox's ledger) takes a proxy wherever it takes the real object (callers `cast` it to the
protocol it stands in for: the check is structural, and `__getattr__` is invisible to it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any


class ActorProxy:
    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)
        handle = self._handle

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await handle.call.remote(method, *args, **kwargs)

        call.__name__ = method
        return call

    def __reduce__(self) -> tuple[Any, ...]:
        return (ActorProxy, (self._handle,))


class Forwarder:
    """The actor side: forwards `call` to `target`, but only for the methods it allows."""

    def __init__(self, target: Any, allowed: Iterable[str]) -> None:
        self._target = target
        self._allowed = frozenset(allowed)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method not in self._allowed:
            raise AttributeError(f"{type(self._target).__name__}.{method} is not callable remotely")
        return await getattr(self._target, method)(*args, **kwargs)
