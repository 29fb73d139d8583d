"""Double-texting policies: what a session does when a user sends several messages in a row.

Chosen per agent (`agents.yaml` names the mode; `SessionHooks.policy_for` maps the agent in charge
to a policy). The timelines are in docs/sessions.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DEFAULT_POLICY", "DEFAULT_REJECT_REPLY", "DoubleTextingPolicy", "PolicyMode"]

DEFAULT_REJECT_REPLY = "One moment please, I'm still answering your previous message."


class PolicyMode(StrEnum):
    COALESCE = "coalesce"  # wait for a quiet period, then one turn over every pending message
    ENQUEUE = "enqueue"  # every message its own turn, in order
    REJECT = "reject"  # while a turn runs, new messages get a polite reply and no turn
    INTERRUPT = "interrupt"  # a new message cancels the running turn, which reruns with all input


@dataclass(frozen=True, slots=True)
class DoubleTextingPolicy:
    """A mode and its knobs. The knobs a mode does not use are ignored."""

    mode: PolicyMode = PolicyMode.COALESCE
    quiet_period_s: float = 1.5  # coalesce: run once no message came for this long...
    max_wait_s: float = 6.0  # ...or this long after the first pending message, whichever is first
    reject_reply: str = DEFAULT_REJECT_REPLY

    def __post_init__(self) -> None:
        if self.quiet_period_s < 0 or self.max_wait_s < 0:
            raise ValueError("quiet_period_s and max_wait_s must be >= 0")
        if self.mode is PolicyMode.REJECT and not self.reject_reply.strip():
            raise ValueError("the reject policy needs a non-empty reject_reply")

    @classmethod
    def parse(cls, mode: str, **knobs: float | str) -> DoubleTextingPolicy:
        """From configuration: `parse("enqueue")`. Raises `ValueError` naming the known modes."""
        try:
            parsed = PolicyMode(mode.strip().lower())
        except ValueError:
            known = ", ".join(m.value for m in PolicyMode)
            raise ValueError(f"unknown double-texting policy {mode!r} (known: {known})") from None
        return cls(parsed, **knobs)  # type: ignore[arg-type]


DEFAULT_POLICY = DoubleTextingPolicy()
