"""Story files (validation with the file, story and step named), durations, the JUnit XML shape,
and the scripted engine's rules with tool calls and placeholders (what the shop's stories use)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from whatsray.llm import ChatMessage
from whatsray.llm.factory import build_engine
from whatsray.llm.scripted import KeywordRules
from whatsray.stories.model import (
    ReplyCheck,
    StoryFileError,
    load_stories,
    parse_duration,
    parse_stories,
    story_files,
)
from whatsray.stories.report import junit_xml
from whatsray.stories.runner import StepResult, StoryResult


def story(*steps: object, **extra: object) -> dict[str, object]:
    return {"stories": [{"name": "s1", "steps": list(steps), **extra}]}


def test_every_step_kind_parses() -> None:
    [parsed] = parse_stories(
        story(
            {"user": "hi"},
            {"button": "Yes please"},
            {"button": {"id": "faq:hours", "title": "Hours"}},
            {"list": "Late"},
            {"media": {"type": "image", "caption": "look"}},
            {"location": {"latitude": 52.5, "longitude": 13.4, "name": "Shop"}},
            {"wait": "2h"},
            {"pause": 90},
            {"agent": "faq"},
            {"reply": {"matches": "^Hi"}},
            {"buttons": ["A", "B"]},
            {"tool": "handoff_to_human"},
            {"tool": {"name": "schedule_reminder", "arguments": {"text": "x"}}},
            {"handoff": True},
            {"reminder": {"in": "1h30m", "text": "bike"}},
            {"reminder": True},
            {"no_reply": True},
            user="+15551234567",
        ),
        "f.yaml",
    )
    assert parsed.user == "15551234567" and parsed.file == "f.yaml"
    kinds = [s.kind for s in parsed.steps]
    assert kinds[:3] == ["user", "button", "button"] and kinds[-1] == "no_reply"
    assert parsed.steps[6].value == 7200.0 and parsed.steps[7].value == 90.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"story": []}, "f.yaml: stories: Field required"),
        ({"stories": []}, "f.yaml: stories: List should have at least 1 item"),
        (story({"user": "hi"}, {"replie": "x"}), "story 's1', step 2: unknown step kind 'replie'"),
        (story({"user": "hi", "agent": "faq"}), "story 's1', step 1: a step is a mapping with one"),
        (story({"user": 3}), "story 's1', step 1: user: Input should be a valid string"),
        (story({"user": "hi"}, {"reply": {"equals": "a", "contains": "b"}}), "exactly one of"),
        (story({"user": "hi"}, {"reply": {"matches": "("}}), "not a regular expression"),
        (story({"user": "hi"}, {"reply": {"equal": "a"}}), "Extra inputs are not permitted"),
        (story({"wait": "2 hours"}), "step 1: not a duration: '2 hours'"),
        (story({"user": "hi"}, {"handoff": "maybe"}), "step 2: handoff: Input should be"),
        (story({"user": "hi"}, {"no_reply": False}), "step 2: no_reply"),
        (story({"media": {"type": "gif"}}), "step 1: media: type: Input should be"),
        (story({"location": {"latitude": 91, "longitude": 0}}), "latitude"),
        (story({"user": "hi"}, {"reminder": {"in": "1h", "at": "x"}}), "in or at, not both"),
        (story({"agent": "faq"}), "story 's1': no user step"),
        (story({"user": "hi"}, user="abc"), "story 's1': user: String should match"),
        (story({"user": "hi"}, color="red"), "story 's1': color: Extra inputs"),
        (
            {"stories": [{"name": "a", "steps": [{"user": "x"}]}] * 2},
            "story 'a': two stories of this file have this name",
        ),
    ],
)
def test_a_bad_story_names_its_file_story_and_step(data: object, message: str) -> None:
    with pytest.raises(StoryFileError) as raised:
        parse_stories(data, "f.yaml")
    assert message in str(raised.value)
    assert str(raised.value).startswith("f.yaml: ")


def test_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("stories: [{name: b, steps: [{user: hi}]}]")
    (tmp_path / "a.yml").write_text("stories: [{name: a, steps: [{user: hi}]}]")
    (tmp_path / "engines.yaml").write_text("shop: {engine: scripted}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("stories: [{name: c, steps: [{user: hi}]}]")
    assert [p.name for p in story_files([tmp_path])] == ["a.yml", "b.yaml"]
    assert [s.name for s in load_stories([tmp_path, tmp_path / "sub" / "c.yaml"])] == [
        "a",
        "b",
        "c",
    ]
    with pytest.raises(StoryFileError, match="no such file"):
        story_files([tmp_path / "missing.yaml"])
    (tmp_path / "bad.yaml").write_text("stories: [")
    with pytest.raises(StoryFileError, match=r"bad\.yaml: not valid YAML"):
        load_stories([tmp_path])


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1h30m") == 5400
    assert parse_duration("1d") == 86400 and parse_duration(2.5) == 2.5
    assert parse_duration("250ms") == 0.25
    for bad in ("", "2 hours", "h", "-1s"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)
    with pytest.raises(ValueError, match="negative"):
        parse_duration(-1)


def test_the_junit_xml_has_one_testcase_per_story_with_the_failing_steps() -> None:
    [ok, bad] = parse_stories(
        {
            "stories": [
                {"name": "ok", "steps": [{"user": "hi"}]},
                {"name": "bad", "steps": [{"user": "hi"}, {"agent": "faq"}]},
            ]
        },
        "shop.yaml",
    )
    results = [
        StoryResult(ok, "1", [StepResult(1, "user: hi", True)], 0.5),
        StoryResult(
            bad,
            "2",
            [
                StepResult(1, "user: hi", True),
                StepResult(2, "agent: faq", False, "agent 'faq'", "'x'"),
            ],
            0.25,
        ),
    ]
    root = junit_xml(results, 1.0).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    [suite] = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name"), c.get("time")) for c in cases] == [
        ("shop.yaml", "ok", "0.500"),
        ("shop.yaml", "bad", "0.250"),
    ]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "step 2 (agent: faq): expected agent 'faq', got 'x'"
    assert failure.text == failure.get("message")
    ET.fromstring(ET.tostring(root))  # well-formed


def _system(now: str = "Monday, 2030-01-07 09:00", faq: str = "") -> ChatMessage:
    return ChatMessage.system(f"Be brief.\n\nCurrent date and time: {now} (UTC).{faq}")


def test_scripted_rules_call_tools_then_answer_with_placeholders() -> None:
    rules = KeywordRules(
        [
            (
                "remind",
                "Set for {now+2h}.",
                [{"name": "schedule_reminder", "arguments": {"at": "{now+2h}", "n": 1}}],
            ),
            ("hours", "FAQ: {knowledge}"),
        ],
        default="echo: {user}",
    )
    asked = [_system(), ChatMessage.user("remind me")]
    call = rules(asked)
    assert call == {
        "content": "",
        "tool_calls": [
            {"name": "schedule_reminder", "arguments": {"at": "2030-01-07T11:00", "n": 1}}
        ],
    }
    after = [
        *asked,
        ChatMessage(role="assistant", content=""),
        ChatMessage(role="tool", content="{}", tool_call_id="c"),
    ]
    assert rules(after) == "Set for 2030-01-07T11:00."
    faq = "\n\nFAQ entries:\n\n[q1] (Hours) Q: When?\nA: Mon-Fri 9-18.\n\n[q2] Q: Where?\nA: Here."
    assert rules([_system(faq=faq), ChatMessage.user("your hours?")]) == "FAQ: Mon-Fri 9-18."
    assert rules([_system(), ChatMessage.user("hello")]) == "echo: hello"


async def test_a_scripted_engine_from_config_scripts_tool_calls() -> None:
    engine = build_engine(
        {
            "engine": "scripted",
            "rules": [
                {
                    "match": "complain",
                    "reply": "A person will answer.",
                    "tool_calls": [{"name": "handoff_to_human", "arguments": {"reason": "r"}}],
                }
            ],
        }
    )
    reply = await engine.chat([ChatMessage.user("I complain")])
    [call] = reply.tool_calls
    assert (call.name, json.loads(call.arguments_json)) == ("handoff_to_human", {"reason": "r"})
    with pytest.raises(ValueError, match="tool_calls"):
        build_engine(
            {"engine": "scripted", "rules": [{"match": "x", "reply": "y", "tool_calls": [{}]}]}
        )


def test_reply_check_needs_one_way() -> None:
    assert ReplyCheck(contains="a").contains == "a"
