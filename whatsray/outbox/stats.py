"""The outbox's counters, plain attributes that a metrics exporter reads (Ray metrics later)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from whatsray.outbox.rate_limits import RateLimitStats

__all__ = ["OutboxStats"]


@dataclass
class OutboxStats:
    """Counters for metrics (plain ints; Ray metrics read them later)."""

    submitted: int = 0  # items newly recorded
    sent: int = 0  # accepted by Meta (a wamid came back)
    already_done: int = 0  # submitted again but already sent/final: nothing sent
    retried: int = 0  # transient failures followed by another attempt
    dead_lettered: int = 0
    ambiguous_resends: int = 0  # sends of a record that may already have reached Meta
    duplicate_sends_seen: int = 0  # a status for a second wamid of one outbound id
    statuses_applied: int = 0
    statuses_unknown: int = 0  # statuses for wamids this ledger does not know
    replays: int = 0
    template_fallbacks: int = 0  # templates recorded in place of messages the window refused
    rate_limit: RateLimitStats = field(default_factory=RateLimitStats)

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {k: v for k, v in asdict(self).items() if k != "rate_limit"}
        out.update({f"rate_limit_{k}": v for k, v in asdict(self.rate_limit).items()})
        return out
