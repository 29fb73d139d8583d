"""How sessions behave (`SessionConfig`) and what they call (`SessionHooks`).

The hooks are every I/O seam of a session: the store, the stream, the agents, the outbox. The Ray
edge wires them to actor handles; tests wire them to in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from whatsray.session.policies import DEFAULT_POLICY, DoubleTextingPolicy
from whatsray.session.state import SessionState
from whatsray.session.turns import (
    AnyEvent,
    NonMessageEvent,
    RecordReason,
    ToolCallJournal,
    TurnRequest,
    TurnResult,
)
from whatsray.whatsapp.events import ChatKey, MessageEvent

__all__ = [
    "DEFAULT_APOLOGY",
    "Quarantine",
    "SessionConfig",
    "SessionHooks",
]

DEFAULT_APOLOGY = "Sorry, something went wrong on our side. Please try again in a moment."


@dataclass(frozen=True, slots=True)
class SessionConfig:
    history_limit: int = 50  # messages in the window handed to a turn
    idle_timeout_s: float = 3600.0  # an idle session is passivated after this long
    recent_ids_limit: int = 32  # committed event ids remembered per session, for redelivery
    turn_timeout_s: float | None = 300.0  # a turn running longer fails (apology), None: no limit
    retry_initial_s: float = 0.5  # backoff of a failed commit, record, status or state load...
    retry_max_s: float = 30.0  # ...doubling up to this, each wait spread by +-retry_jitter...
    retry_jitter: float = 0.2
    # ...until this long after the first failure: then the items are quarantined (None: never).
    retry_deadline_s: float | None = 600.0
    apology: str = DEFAULT_APOLOGY  # the reply of a failed turn, unless on_turn_error says else
    default_policy: DoubleTextingPolicy = DEFAULT_POLICY  # when there is no policy_for

    def __post_init__(self) -> None:
        if self.history_limit < 0 or self.recent_ids_limit < 0:
            raise ValueError("history_limit and recent_ids_limit must be >= 0")
        if self.idle_timeout_s <= 0:
            raise ValueError("idle_timeout_s must be > 0")
        if self.turn_timeout_s is not None and self.turn_timeout_s <= 0:
            raise ValueError("turn_timeout_s must be > 0 (or None for no limit)")
        if not 0 < self.retry_initial_s <= self.retry_max_s:
            raise ValueError("need 0 < retry_initial_s <= retry_max_s")
        if self.retry_deadline_s is not None and self.retry_deadline_s <= 0:
            raise ValueError("retry_deadline_s must be > 0 (or None to retry forever)")


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Items a session gave up on (docs/errors.md): `stage` is the hook that failed, `reason`
    "permanent" (retrying cannot help) or "deadline" (transient, still failing at its deadline).
    The `quarantine` hook stores it; then the session acks the items and goes on."""

    chat: ChatKey
    stage: str
    events: tuple[AnyEvent, ...]
    reason: str
    error: str
    turn_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionHooks:
    """The injected async callables. All but the last two are required.

    Contract (docs/sessions.md has the details):
    - `commit_turn` is atomic and idempotent on `request.turn_id`: it records the inputs, the turn
      and its outbound items. Raising means "not committed": the session retries with backoff and
      acks nothing meanwhile.
    - `ack` is called with the ack tokens of committed items only. A failed ack is logged and not
      retried: the entries are redelivered later and deduped.
    - `record_messages` stores messages that get no turn (handoff, rejected) with the same
      commit-or-raise contract; `on_status` applies a non-message event (idempotent; raise to
      retry).
    - `send_reply` sends the reject policy's polite reply (best effort; derive its outbound id from
      the message replied to).
    - Each of those is retried while it fails transiently, until `retry_deadline_s`; a permanent
      failure or the deadline hands the items to `quarantine` (store them, commit-or-raise),
      then they are acked: one bad item never holds its chat. Without `quarantine` they are
      logged as errors and acked.
    - `on_turn_error` turns a failed `run_turn` into the result to commit (default: the configured
      apology, outcome FAILED). `policy_for` picks the double-texting policy of an agent.
    """

    load_state: Callable[[ChatKey], Awaitable[SessionState]]
    run_turn: Callable[[TurnRequest, ToolCallJournal], Awaitable[TurnResult]]
    commit_turn: Callable[[TurnRequest, TurnResult], Awaitable[None]]
    ack: Callable[[tuple[str, ...]], Awaitable[None]]
    on_status: Callable[[NonMessageEvent], Awaitable[None]]
    record_messages: Callable[[ChatKey, tuple[MessageEvent, ...], RecordReason], Awaitable[None]]
    send_reply: Callable[[ChatKey, str, MessageEvent], Awaitable[None]]
    on_turn_error: Callable[[TurnRequest, Exception], Awaitable[TurnResult]] | None = None
    policy_for: Callable[[str | None], DoubleTextingPolicy] | None = None
    quarantine: Callable[[Quarantine], Awaitable[None]] | None = None
