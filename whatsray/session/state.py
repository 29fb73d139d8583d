"""Per-chat state kept in memory between turns, and its history window.

`SessionState` is what `load_state` rebuilds from the store when a session activates, and what the
session replaces (never mutates) after each committed turn. It is small on purpose: a host keeps one
per idle chat, 100,000 of them, so history entries hold only what an agent prompt needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from whatsray.whatsapp.events import MessageEvent

__all__ = [
    "EMPTY_STATE",
    "HistoryMessage",
    "Role",
    "SessionState",
    "append_bounded",
    "history_of_event",
    "history_of_part",
]

Role = Literal["user", "assistant"]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One message of the window: who said it, the words (or `[image]`...), when."""

    role: Role
    text: str
    at: float  # unix seconds
    message_id: str | None = None  # the wamid of a user's message


@dataclass(frozen=True, slots=True)
class SessionState:
    """A chat's state between turns.

    `history` is the window of the last N messages (older ones dropped). `recent_event_ids` are
    the ids of the last inbound events already committed, newest last: the session acks a
    redelivered one without running it again. The store seeds it on activation, which is what
    makes a redelivery after a host restart harmless (see docs/sessions.md, "Dedupe layers").
    """

    history: tuple[HistoryMessage, ...] = ()
    agent: str | None = None
    handoff: bool = False
    last_inbound_at: float | None = None  # the user's last message: opens the 24-hour window
    recent_event_ids: tuple[str, ...] = ()
    summary: str | None = None  # of the history older than the window, where the store keeps one

    def bounded(self, history_limit: int, recent_limit: int) -> SessionState:
        """This state with both windows cut to their limits (a store may return more)."""
        if len(self.history) <= history_limit and len(self.recent_event_ids) <= recent_limit:
            return self
        return replace(
            self,
            history=_last(self.history, history_limit),
            recent_event_ids=_last(self.recent_event_ids, recent_limit),
        )

    def after(
        self,
        *,
        messages: Iterable[HistoryMessage],
        event_ids: Iterable[str],
        history_limit: int,
        recent_limit: int,
        last_inbound_at: float | None = None,
        agent: str | None = None,
        handoff: bool | None = None,
    ) -> SessionState:
        """The state once these messages are committed (agent/handoff unchanged when None)."""
        latest = self.last_inbound_at
        if last_inbound_at is not None and (latest is None or last_inbound_at > latest):
            latest = last_inbound_at
        return SessionState(
            history=append_bounded(self.history, messages, history_limit),
            agent=self.agent if agent is None else agent,
            handoff=self.handoff if handoff is None else handoff,
            last_inbound_at=latest,
            recent_event_ids=append_bounded(self.recent_event_ids, event_ids, recent_limit),
            summary=self.summary,
        )


EMPTY_STATE = SessionState()


def _last(items: tuple[_T, ...], limit: int) -> tuple[_T, ...]:
    return items[-limit:] if limit > 0 else ()


def append_bounded(items: tuple[_T, ...], new: Iterable[_T], limit: int) -> tuple[_T, ...]:
    """`items + new`, keeping only the last `limit`."""
    added = tuple(new)
    if not added:
        return items
    return _last(items + added, limit)


def history_of_event(event: MessageEvent, at: float) -> HistoryMessage:
    """A user's message as the history keeps it: its words, or `[type]` for media without any."""
    text = event.text
    if text is None:
        text = f"[{event.raw_type or event.type.value}]"
    return HistoryMessage(role="user", text=text, at=at, message_id=event.message_id)


def history_of_part(part: str | dict[str, Any], at: float) -> HistoryMessage:
    """A reply part as the history keeps it: text bodies by their words, others as `[type]`."""
    if isinstance(part, str):
        return HistoryMessage(role="assistant", text=part, at=at)
    kind = part.get("type")
    text_obj = part.get("text")
    if kind == "text" and isinstance(text_obj, dict) and isinstance(text_obj.get("body"), str):
        return HistoryMessage(role="assistant", text=text_obj["body"], at=at)
    return HistoryMessage(role="assistant", text=f"[{kind or 'message'}]", at=at)
