"""Every bad job definition gets an error that names the field and the problem."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from whatsray.scheduling import (
    CronSpec,
    DateSpec,
    Job,
    JobConflictError,
    JobPatch,
    JobSpec,
    JobValidationError,
    Misfire,
    QuietHours,
    UnknownJobError,
    default_system_jobs,
    validate_job,
)
from whatsray.session.scheduled import is_scheduled, opens_window, scheduled_event
from whatsray.whatsapp.events import ChatKey

NOW = datetime(2025, 6, 2, 8, 0, tzinfo=UTC).timestamp()
CHAT = "106540352242922:15551234567"


def job(**changes: Any) -> Job:
    values: dict[str, Any] = {
        "id": "j1",
        "name": "test",
        "kind": "reminder",
        "chat": CHAT,
        "payload": {"text": "call mom"},
        "trigger": CronSpec(expression="0 9 * * *"),
        "timezone": None,
        "quiet_hours": None,
        "misfire": Misfire(),
        "enabled": True,
        "active_since": NOW,
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(changes)
    return Job(**values)


def check(j: Job, new_schedule: bool = True) -> None:
    validate_job(j, default_timezone="UTC", now=NOW, new_schedule=new_schedule)


def problem(j: Job) -> tuple[str, str]:
    with pytest.raises(JobValidationError) as caught:
        check(j)
    return caught.value.field, caught.value.message


def test_a_good_reminder_passes() -> None:
    check(job())
    check(job(timezone="America/New_York", quiet_hours=QuietHours(start="22:00", end="07:30")))


def test_an_invalid_cron_expression_is_named() -> None:
    field, message = problem(job(trigger=CronSpec(expression="61 * * * *")))
    assert field == "trigger.expression"
    assert "invalid cron expression '61 * * * *'" in message and "59" in message
    field, message = problem(job(trigger=CronSpec(expression="every day")))
    assert field == "trigger.expression" and "expected 5 fields" in message


def test_an_unknown_time_zone_is_named() -> None:
    assert problem(job(timezone="Mars/Olympus")) == (
        "timezone",
        "unknown time zone 'Mars/Olympus' (use an IANA name like 'Europe/Berlin' or 'UTC')",
    )
    with pytest.raises(JobValidationError, match="timezone: unknown time zone"):
        validate_job(job(), default_timezone="Nowhere/Town", now=NOW, new_schedule=True)


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({}, "payload.text", "non-empty text"),
        ({"text": "   "}, "payload.text", "non-empty text"),
        ({"text": 5}, "payload.text", "non-empty text"),
        ({"text": "x" * 2001}, "payload.text", "at most 2000"),
        ({"text": "hi", "when": "now"}, "payload.when", "unknown field"),
    ],
)
def test_a_bad_reminder_payload_is_named(
    payload: dict[str, Any], field: str, fragment: str
) -> None:
    got_field, message = problem(job(payload=payload))
    assert got_field == field and fragment in message


@pytest.mark.parametrize("chat", ["15551234567", "abc:15551234567", ":15551234567", None])
def test_a_bad_chat_is_named(chat: str | None) -> None:
    field, message = problem(job(chat=chat))
    assert field == "chat"
    assert "chat key" in message or "digits" in message or "needs the chat" in message


def test_system_jobs_have_no_chat_no_quiet_hours_and_a_known_task() -> None:
    system = job(kind="system", chat=None, payload={"task": "cleanup"})
    check(system)
    assert problem(system.model_copy(update={"chat": CHAT}))[0] == "chat"
    assert problem(system.model_copy(update={"payload": {"task": "mine bitcoin"}}))[0] == (
        "payload.task"
    )
    quiet = system.model_copy(update={"quiet_hours": QuietHours(start="22:00", end="08:00")})
    assert problem(quiet)[0] == "quiet_hours"
    for spec in default_system_jobs():  # the built-in ones are valid
        check(job(**spec.model_dump(exclude={"id", "enabled"}), id=spec.id), new_schedule=False)


def test_a_one_shot_in_the_past_is_refused_only_when_it_is_given() -> None:
    past = job(trigger=DateSpec(run_at=datetime(2025, 6, 1, 9, 0, tzinfo=UTC)))
    field, message = problem(past)
    assert field == "trigger.run_at" and "in the past" in message
    check(past, new_schedule=False)  # an old job that already ran is not invalid


def test_shapes_are_checked_by_the_models() -> None:
    base = {"name": "n", "chat": CHAT, "payload": {"text": "t"}}
    with pytest.raises(ValidationError, match="HH:MM"):
        JobSpec(
            **base,
            trigger=CronSpec(expression="* * * * *"),
            quiet_hours={"start": "25:00", "end": "08:00"},
        )  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must differ"):
        QuietHours(start="08:00", end="08:00")
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        JobSpec.model_validate({**base, "trigger": {"type": "interval", "seconds": 0}})
    with pytest.raises(ValidationError, match=r"does not match any of the expected tags"):
        JobSpec.model_validate({**base, "trigger": {"type": "weekly"}})
    with pytest.raises(ValidationError, match="String should match pattern"):
        JobSpec.model_validate(
            {**base, "id": "has space", "trigger": {"type": "cron", "expression": "* * * * *"}}
        )
    with pytest.raises(ValidationError, match="cannot be null"):
        JobPatch.model_validate({"name": None})
    with pytest.raises(ValidationError, match="Extra inputs"):
        JobPatch.model_validate({"chat": CHAT})
    assert JobPatch.model_validate({"quiet_hours": None}).model_fields_set == {"quiet_hours"}


def test_errors_survive_pickling_as_ray_sends_them() -> None:
    for error in (
        JobValidationError("timezone", "unknown"),
        UnknownJobError("j9"),
        JobConflictError("taken"),
    ):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
    assert str(UnknownJobError("j9")) == "no job 'j9'"


def test_a_job_round_trips_through_its_store_record() -> None:
    j = job(quiet_hours=QuietHours(start="22:00", end="08:00"), misfire=Misfire(grace_s=5))
    assert Job.from_record(j.to_record()) == j


def test_a_scheduled_event_is_not_the_user_writing() -> None:
    chat = ChatKey.parse(CHAT)
    event = scheduled_event(
        run_id="j1@2025-06-02T09:00:00Z",
        job_id="j1",
        job_name="test",
        chat=chat,
        instruction="call mom",
        scheduled_for=NOW,
        due_at=NOW,
    )
    assert event.idempotency_key == "j1@2025-06-02T09:00:00Z" and event.message_id is None
    assert event.text == "[Scheduled reminder] call mom"
    assert is_scheduled(event) and not opens_window(event)
    assert event.chat == chat
