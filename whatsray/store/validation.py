"""Bad input is refused at the call, with a message that says what is wrong, before anything
reaches the writer's batch (where it would only fail there, and later)."""

from __future__ import annotations

from whatsray.store.records import ToolCallRecord, TurnRecord

__all__ = ["check_limit", "check_tool_calls"]


def check_tool_calls(turn: TurnRecord, calls: tuple[ToolCallRecord, ...]) -> None:
    """Bad input fails at the call, not in the writer's batch: the calls are this turn's, and
    numbered 0, 1, 2... in order."""
    for expected, call in enumerate(calls):
        if call.turn_id != turn.turn_id:
            raise ValueError(
                f"tool call {call.call_id!r} is of turn {call.turn_id!r}, not {turn.turn_id!r}"
            )
        if call.idx != expected:
            raise ValueError(
                f"tool calls must be numbered 0..n-1 in order; found {call.idx} at {expected}"
            )


def check_limit(limit: int, offset: int = 0) -> None:
    if limit < 1 or offset < 0:
        raise ValueError(f"limit must be >= 1 and offset >= 0 (got {limit}, {offset})")
