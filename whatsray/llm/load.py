"""How loaded an engine is: what backpressure decisions read.

An engine that can tell (vLLM's scheduler, a llama.cpp pool, the admission queue in front of any
engine) reports an `EngineLoad`; one that cannot simply has no `load()` method.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EngineLoad", "ReportsLoad"]


class EngineLoad(BaseModel):
    """`running`: requests generating now; `waiting`: requests queued before generation;
    `capacity`: how many it generates at once (None: unknown)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    running: int = Field(0, ge=0)
    waiting: int = Field(0, ge=0)
    capacity: int | None = Field(None, ge=1)

    @property
    def saturated(self) -> bool:
        """A new request would wait: something already waits, or every slot is busy."""
        if self.waiting > 0:
            return True
        return self.capacity is not None and self.running >= self.capacity


@runtime_checkable
class ReportsLoad(Protocol):
    async def load(self) -> EngineLoad: ...
