"""A stand-in for the inbox where the scheduler's runs go: it keeps what it is given."""

from __future__ import annotations

from collections.abc import Sequence

from whatsray.inbox import AppendOutcome, AppendResult
from whatsray.whatsapp.events import Event


class RecordingSink:
    """`whatsray.scheduling.ports.EventSink` that records every appended event, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def append(self, events: Sequence[Event]) -> AppendResult:
        self.events.extend(events)
        return AppendResult(
            tuple(
                AppendOutcome(i, e.idempotency_key, 0, f"{len(self.events)}-{i}", False)
                for i, e in enumerate(events)
            )
        )
