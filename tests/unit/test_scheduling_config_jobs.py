"""The jobs file (`configs/jobs.yaml`): what it declares, and every problem named at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from whatsray.scheduling import (
    CronSpec,
    DateSpec,
    IntervalSpec,
    JobsConfigError,
    load_jobs_file,
    parse_jobs,
)
from whatsray.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
CHAT = "106540352242922:15551234567"


def test_the_shipped_file_declares_a_disabled_morning_greeting() -> None:
    [greeting] = load_jobs_file(ROOT / "configs" / "jobs.yaml")
    assert greeting.id == "config:morning_greeting" and greeting.kind == "system"
    assert greeting.payload["task"] == "greeting" and greeting.payload["audience"] == "opted_in"
    assert greeting.trigger == CronSpec(expression="0 8 * * *")
    assert greeting.timezone == "Europe/Berlin" and not greeting.enabled
    assert load_settings().jobs_file == Path("configs/jobs.yaml")


def test_an_absent_file_or_none_declares_nothing(tmp_path: Path) -> None:
    assert load_jobs_file(tmp_path / "missing.yaml") == ()
    assert load_jobs_file(None) == ()
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_jobs_file(empty) == ()


def test_reminders_for_a_chat_and_each_kind_of_trigger() -> None:
    specs = parse_jobs(
        {
            "jobs": {
                "weekly": {"chat": CHAT, "cron": "0 9 * * 1", "text": "Workshop at 10."},
                "once": {"chat": CHAT, "at": "2030-01-01T09:00", "text": "Happy new year."},
                "hourly": {"chat": CHAT, "every_s": 3600, "text": "Drink water.", "name": "W"},
            }
        }
    )
    weekly, once, hourly = specs
    assert (weekly.id, weekly.kind, weekly.chat) == ("config:weekly", "reminder", CHAT)
    assert weekly.payload == {"text": "Workshop at 10."} and weekly.name == "weekly"
    assert isinstance(once.trigger, DateSpec)
    assert hourly.trigger == IntervalSpec(seconds=3600) and hourly.name == "W"


def test_every_problem_is_named_with_its_job_and_field(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        """
jobs:
  Bad Name: {chat: "1:2", cron: "* * * * *", text: x}
  both: {chat: "106540352242922:1555", audience: opted_in, cron: "0 8 * * *", text: x}
  nowhen: {audience: opted_in, text: x}
  badcron: {audience: opted_in, cron: "0 25 * * *", text: x}
  badzone: {audience: opted_in, cron: "0 8 * * *", timezone: Moon/Base, text: x}
  typo: {audience: opted_in, cron: "0 8 * * *", text: x, enabeld: true}
  number: {chat: "106540352242922:1555", phone_number_id: "1", cron: "0 8 * * *", text: x}
"""
    )
    with pytest.raises(JobsConfigError) as caught:
        load_jobs_file(path)
    problems = caught.value.problems
    assert len(problems) == 7, problems
    assert str(caught.value).startswith(f"{path}: 7 problems:\n  - job 'Bad Name': a name is")
    joined = "\n".join(problems)
    assert "job 'both', field 'job': Value error, give exactly one of audience" in joined
    assert "job 'nowhen', field 'job': Value error, give exactly one of cron, at, every_s" in joined
    assert "job 'badcron', field 'cron': invalid cron expression '0 25 * * *'" in joined
    assert "job 'badzone', field 'timezone': unknown time zone 'Moon/Base'" in joined
    assert "job 'typo', field 'enabeld': unknown field" in joined
    assert "job 'number', field 'job': Value error, phone_number_id narrows" in joined


def test_the_file_must_be_a_jobs_mapping(tmp_path: Path) -> None:
    with pytest.raises(JobsConfigError, match="one mapping, `jobs:`"):
        parse_jobs({"job": {}})
    with pytest.raises(JobsConfigError, match="must map job names"):
        parse_jobs({"jobs": ["a"]})
    path = tmp_path / "bad.yaml"
    path.write_text("jobs: [unclosed")
    with pytest.raises(JobsConfigError, match="not valid YAML"):
        load_jobs_file(path)
