"""The session's values: stable turn ids, the tool-call journal, pickling, history entries."""

from __future__ import annotations

import pickle

import pytest

from tests.unit.session_harness import chat_key, message
from whatsray.session import (
    CANCELLED,
    HistoryMessage,
    SessionState,
    ToolCall,
    ToolCallJournal,
    ToolCallStatus,
    TurnOutcome,
    TurnRequest,
    TurnResult,
    TurnUsage,
    turn_id_for,
)
from whatsray.session.state import history_of_event, history_of_part
from whatsray.whatsapp.message_content import ImageContent, MessageType


def test_turn_ids_are_stable_and_depend_on_every_input_in_order() -> None:
    chat = chat_key()
    first = turn_id_for(chat, ["m1", "m2"])
    assert first == turn_id_for(str(chat), ("m1", "m2"))  # same inputs, same id, any process
    assert first.startswith("turn-")
    assert len({first, turn_id_for(chat, ["m2", "m1"]), turn_id_for(chat, ["m1"])}) == 3
    assert turn_id_for(chat, ["m1"]) != turn_id_for(chat_key("other"), ["m1"])
    assert turn_id_for(chat, ["a", "b"]) != turn_id_for(chat, ["a\x1fb"])  # no ambiguous joins


def test_the_journal_completes_unfinished_calls_as_cancelled() -> None:
    journal = ToolCallJournal()
    journal.started("c1", "search", '{"q": "x"}')
    journal.finished("c1", "found")
    journal.started("c2", "book")
    journal.started("c3", "pay")
    journal.finished("c3", "card declined", error=True)
    assert len(journal) == 3
    assert [c.finished for c in journal.calls] == [True, False, True]

    calls = journal.cancel_unfinished()
    assert [(c.call_id, c.status, c.result) for c in calls] == [
        ("c1", ToolCallStatus.OK, "found"),
        ("c2", ToolCallStatus.CANCELLED, CANCELLED),
        ("c3", ToolCallStatus.ERROR, "card declined"),
    ]
    assert calls[0].arguments == '{"q": "x"}'


def test_requests_and_results_survive_pickling() -> None:
    request = TurnRequest(
        turn_id=turn_id_for(chat_key(), ["m1"]),
        chat=chat_key(),
        inputs=(message("m1", "hi", at=1_700_000_000.0),),
        history=(HistoryMessage("assistant", "hello", 1.0),),
        agent="assistant",
        handoff=False,
        last_inbound_at=1_700_000_000.0,
        interrupted_tool_calls=(
            ToolCall("c1", "search", "{}", CANCELLED, ToolCallStatus.CANCELLED),
        ),
    )
    result = TurnResult(
        reply_parts=["text", {"type": "text", "text": {"body": "hi"}}],
        agent="assistant",
        tool_calls=[ToolCall("c2", "lookup", "{}", "ok", ToolCallStatus.OK)],
        usage=TurnUsage(engine="scripted", prompt_tokens=3, completion_tokens=4),
    )
    assert pickle.loads(pickle.dumps(request)) == request
    assert pickle.loads(pickle.dumps(result)) == result
    assert request.input_ids == ("m1",)
    assert isinstance(result.reply_parts, tuple)
    assert isinstance(result.tool_calls, tuple)


def test_a_result_takes_the_outcome_as_a_string_and_checks_it() -> None:
    assert TurnResult(outcome="handoff").outcome is TurnOutcome.HANDOFF  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TurnResult(outcome="exploded")  # type: ignore[arg-type]


def test_history_entries_keep_words_or_name_the_type() -> None:
    assert history_of_event(message("m1", "hi"), 5.0) == HistoryMessage("user", "hi", 5.0, "m1")
    photo = message("m2").model_copy(
        update={"type": MessageType.IMAGE, "raw_type": "image", "content": ImageContent()}
    )
    assert history_of_event(photo, 6.0).text == "[image]"
    assert history_of_part("plain", 1.0).text == "plain"
    assert history_of_part({"type": "text", "text": {"body": "body"}}, 1.0).text == "body"
    assert history_of_part({"type": "interactive", "interactive": {}}, 1.0).text == "[interactive]"


def test_state_windows_stay_bounded() -> None:
    state = SessionState(recent_event_ids=("a", "b"), agent="x", summary="earlier")
    after = state.after(
        messages=[HistoryMessage("user", str(n), float(n)) for n in range(5)],
        event_ids=["c", "d"],
        history_limit=3,
        recent_limit=3,
        last_inbound_at=10.0,
    )
    assert [h.text for h in after.history] == ["2", "3", "4"]
    assert after.recent_event_ids == ("b", "c", "d")
    assert (after.agent, after.summary, after.last_inbound_at) == ("x", "earlier", 10.0)
    older = after.after(
        messages=[], event_ids=[], history_limit=3, recent_limit=3, last_inbound_at=2.0
    )
    assert older.last_inbound_at == 10.0  # never moves back
    nothing_kept = SessionState().after(
        messages=[HistoryMessage("user", "x", 1.0)],
        event_ids=["e"],
        history_limit=0,
        recent_limit=0,
    )
    assert nothing_kept == SessionState()


def test_chat_memory_packs_and_restores_a_state_exactly() -> None:
    from whatsray.session.memory import ChatMemory

    history = (
        HistoryMessage("user", "¿hola? 👋", 1.5, "m1"),
        HistoryMessage("assistant", "", 2.0),
        HistoryMessage("user", "[image]", 3.25, None),
        HistoryMessage("assistant", "bye \ud800", 4.0),  # a lone surrogate survives too
    )
    state = SessionState(
        history=history, agent="a", handoff=True, last_inbound_at=3.0,
        recent_event_ids=("m0", "m1"), summary="s",
    )  # fmt: skip
    memory = ChatMemory.of(state, history_limit=50, recent_limit=32)
    assert memory.state() == state
    assert memory.history(without={"m1"}) == history[1:]
    after = memory.after(
        messages=[
            HistoryMessage("user", "¿hola? 👋", 5.0, "m1"),
            HistoryMessage("assistant", "x", 6.0),
        ],
        event_ids=["m1"],
        history_limit=4,
        recent_limit=2,
    )
    # m1 moves to the end (kept once), the window is cut to its last 4.
    assert [(h.text, h.message_id) for h in after.history()] == [
        ("[image]", None), ("bye \ud800", None), ("¿hola? 👋", "m1"), ("x", None),
    ]  # fmt: skip
    assert after.recent == ("m1", "m1")
