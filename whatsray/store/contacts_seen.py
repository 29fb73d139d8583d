"""What the store wrote lately about each contact (`ContactsSeen`), so that a warm chat's turn
does not upsert the same details with every message (docs/store.md, "Writes")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from whatsray.store.rows import InboundRow

__all__ = ["ContactsSeen"]


class ContactsSeen:
    """What this store wrote lately about each contact, so that a warm chat's turn does not
    upsert the same details with every message (an upsert is the dearest statement of a turn's
    batch). `last_seen` is then exact to `refresh_s`. Only the one writer can keep this."""

    def __init__(self, refresh_s: float = 300.0, max_entries: int = 200_000) -> None:
        self._seen: dict[str, tuple[str | None, str | None, str | None, float]] = {}
        self._refresh_s = refresh_s
        self._max = max_entries

    def mark(self, row: InboundRow) -> InboundRow:
        known = self._seen.get(row.chat)
        if (
            known is not None
            and known[:3] == (row.phone, row.bsuid, row.profile_name)
            and row.at - known[3] < self._refresh_s
        ):
            return replace(row, update_contact=False)
        return row

    def written(self, rows: Sequence[InboundRow]) -> None:
        for row in rows:
            if row.update_contact and not row.scheduled:
                if len(self._seen) >= self._max:
                    self._seen.clear()
                self._seen[row.chat] = (row.phone, row.bsuid, row.profile_name, row.at)
