"""Per-chat session actors (virtual actors inside a SessionHost) and the registry that hosts them.

See docs/sessions.md. Ray-free: the SessionHost actor wraps a `SessionRegistry`.
"""

from __future__ import annotations

from whatsray.session.config import DEFAULT_APOLOGY, Quarantine, SessionConfig, SessionHooks
from whatsray.session.policies import (
    DEFAULT_POLICY,
    DEFAULT_REJECT_REPLY,
    DoubleTextingPolicy,
    PolicyMode,
)
from whatsray.session.registry import RegistryStats, SessionRegistry
from whatsray.session.runtime import TurnTimeoutError
from whatsray.session.session import Session
from whatsray.session.state import EMPTY_STATE, HistoryMessage, SessionState
from whatsray.session.turns import (
    CANCELLED,
    AnyEvent,
    Inbound,
    InboundEntry,
    NonMessageEvent,
    RecordReason,
    ReplyPart,
    ToolCall,
    ToolCallJournal,
    ToolCallStatus,
    TurnOutcome,
    TurnRequest,
    TurnResult,
    TurnUsage,
    turn_id_for,
)

__all__ = [
    "CANCELLED",
    "DEFAULT_APOLOGY",
    "DEFAULT_POLICY",
    "DEFAULT_REJECT_REPLY",
    "EMPTY_STATE",
    "AnyEvent",
    "DoubleTextingPolicy",
    "HistoryMessage",
    "Inbound",
    "InboundEntry",
    "NonMessageEvent",
    "PolicyMode",
    "Quarantine",
    "RecordReason",
    "RegistryStats",
    "ReplyPart",
    "Session",
    "SessionConfig",
    "SessionHooks",
    "SessionRegistry",
    "SessionState",
    "ToolCall",
    "ToolCallJournal",
    "ToolCallStatus",
    "TurnOutcome",
    "TurnRequest",
    "TurnResult",
    "TurnTimeoutError",
    "TurnUsage",
    "turn_id_for",
]
