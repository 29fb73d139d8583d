"""`whatsray test`: the shipped stories, every expectation failing with its message, the steps
the shop's stories cannot show (buttons offered and tapped by title), `--url` against a running
target, and the SmolLM2 smoke stories. No Ray: the in-process platform of whatsray/stories/."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.loop_server import serve_in_loop
from whatsray.cli import main
from whatsray.in_process import ADMIN, PNID, TOKEN, InProcessPlatform, in_process_platform
from whatsray.inbox import partition_for
from whatsray.stories.agents import story_agents
from whatsray.stories.model import Step, parse_stories
from whatsray.stories.runner import _Story, run_story
from whatsray.stories.target import HttpTarget, in_process_target, poll_quiet
from whatsray.whatsapp.events import ChatKey

pytestmark = pytest.mark.integration

SHOP = ["--engines", "tests/stories/engines.yaml", "--engine", "shop"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["test", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_shipped_stories_pass_with_the_scripted_shop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = tmp_path / "stories.xml"
    code, out, _ = run_cli(["tests/stories", *SHOP, "--junit", str(junit)], capsys)
    assert code == 0, out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests", "-1")) >= 12
    assert {c.get("classname") for c in cases} == {
        "tests/stories/messages.yaml",
        "tests/stories/reminders.yaml",
        "tests/stories/shop.yaml",
    }  # the smollm2/ subfolder and engines.yaml are not stories of this run
    assert out.splitlines()[-1].startswith(f"{len(cases)} stories: {len(cases)} passed, 0 failed")


FAILING = """
stories:
  - name: wrong agent
    steps: [{user: Hi}, {agent: faq}]
  - name: wrong equals
    steps: [{user: Hi}, {reply: {equals: Hello}}]
  - name: wrong contains
    steps: [{user: Hi}, {reply: {contains: xyz}}]
  - name: wrong matches
    steps: [{user: Hi}, {reply: {matches: '^\\d+$'}}]
  - name: one reply only
    steps: [{user: Hi}, {reply: {contains: echo}}, {reply: {contains: echo}}]
  - name: a reply came
    steps: [{user: Hi}, {no_reply: true}]
  - name: no tool call
    steps: [{user: Hi}, {tool: handoff_to_human}]
  - name: other arguments
    steps: [{user: I want to complain}, {tool: {name: handoff_to_human, arguments: {reason: x}}}]
  - name: no handoff
    steps: [{user: Hi}, {handoff: true}]
  - name: no reminder
    steps: [{user: Hi}, {reminder: true}]
  - name: reminder at another time
    steps: [{user: remind me please}, {reminder: {in: 5h}}]
  - name: no buttons
    steps: [{user: Hi}, {buttons: [OK, Cancel]}]
  - name: nothing to tap
    steps: [{user: Hi}, {button: OK}, {agent: assistant}]
  - name: passes
    steps: [{user: Hi}, {reply: {equals: "echo: Hi"}}]
"""

EXPECTED = {
    "wrong agent": "step 2 (agent: faq): expected agent 'faq', got 'assistant'",
    "wrong equals": "expected a reply equal to 'Hello', got 'echo: Hi'",
    "wrong contains": "expected a reply containing 'xyz', got 'echo: Hi'",
    "wrong matches": "expected a reply matching /^\\d+$/, got 'echo: Hi'",
    "one reply only": "step 3 (reply: {'contains': 'echo'}): expected a reply containing 'echo',"
    " got no further reply (1 checked)",
    "a reply came": "expected no reply, got 'echo: Hi'",
    "no tool call": "expected a call of handoff_to_human, got no tool call",
    "other arguments": "expected a call of handoff_to_human with {'reason': 'x'}, got"
    " handoff_to_human({'reason': 'the customer asked for a person'})",
    "no handoff": "expected handoff True, got handoff False",
    "no reminder": "expected a reminder, got no reminder",
    "reminder at another time": "expected a reminder due in 5h, got 'pick up the bike' due"
    " 2030-01-07T11:00:00 UTC",
    "no buttons": "expected buttons ['OK', 'Cancel'], got no message with buttons",
    "nothing to tap": "step 2 (button: OK): expected the step to run, got the bot sent no"
    " message with buttons to tap",
}


def test_each_expectation_fails_with_what_was_expected_and_what_came(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stories = tmp_path / "failing.yaml"
    stories.write_text(FAILING, encoding="utf-8")
    junit = tmp_path / "out" / "junit.xml"
    code, out, _ = run_cli([str(stories), *SHOP, "--junit", str(junit)], capsys)
    assert code == 1, out
    lines = out.splitlines()
    for name, message in EXPECTED.items():
        [at] = [i for i, line in enumerate(lines) if line.startswith(f"FAIL  {stories}: {name} (")]
        assert message in lines[at + 1], (name, lines[at + 1])
    assert any(line.startswith(f"PASS  {stories}: passes (") for line in lines)
    # "nothing to tap" stopped at the refused step: its third step never ran.
    assert not any("step 3 (agent: assistant)" in line for line in lines)
    assert lines[-1].startswith("14 stories: 1 passed, 13 failed")
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "13"
    failures = {case.get("name"): case.find("failure") for case in suite.findall("testcase")}
    assert failures["passes"] is None
    wrong = failures["wrong agent"]
    assert wrong is not None and wrong.get("message") == EXPECTED["wrong agent"]


def test_a_bad_story_file_exits_2_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "a.yaml"
    good.write_text("stories:\n  - name: ok\n    steps: [{user: hi}]\n", encoding="utf-8")
    bad = tmp_path / "b.yaml"
    bad.write_text("stories:\n  - name: typo\n    steps: [{user: hi}, {replie: x}]\n")
    code, out, err = run_cli([str(tmp_path), *SHOP], capsys)
    assert code == 2 and out == ""
    assert f"{bad}: story 'typo', step 2: unknown step kind 'replie'" in err
    code, _, err = run_cli([str(good), "--agents", str(tmp_path / "none.yaml")], capsys)
    assert code == 2 and "none.yaml" in err
    code, _, err = run_cli([str(good), "--engine", "nope"], capsys)
    assert code == 2 and "engine override 'nope'" in err


async def _interactive(platform: InProcessPlatform, user: str, kind: str) -> None:
    """What a campaign or another system sends: buttons, or a list (the shop's agents send
    plain text only)."""
    if kind == "button":
        action: dict[str, Any] = {
            "buttons": [
                {"type": "reply", "reply": {"id": "faq:hours", "title": "Opening hours"}},
                {"type": "reply", "reply": {"id": "support:help", "title": "Talk to us"}},
            ]
        }
    else:
        action = {
            "button": "Choose",
            "sections": [{"title": "Help", "rows": [{"id": "support:late", "title": "Late"}]}],
        }
    body = {
        "messaging_product": "whatsapp",
        "to": user,
        "type": "interactive",
        "interactive": {"type": kind, "body": {"text": "How can we help?"}, "action": action},
    }
    response = await platform.control.post(
        f"/v21.0/{PNID}/messages", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text


def _steps(text: str) -> list[Step]:
    [story] = parse_stories({"stories": [{"name": "s", "steps": _yaml(text)}]}, "t")
    return list(story.steps)


def _yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


async def test_buttons_offered_and_tapped_by_title_and_list_rows(tmp_path: Path) -> None:
    config = story_agents("configs/agents.yaml", engine="scripted")
    async with in_process_platform(config, data_dir=tmp_path) as platform:
        user = "15557770001"
        target = in_process_target(platform)
        run = _Story(target, user)
        [hi, offered, tap, agent, pause, row, support] = _steps(
            "[{user: hi}, {buttons: [Opening hours, Talk to us]}, {button: Opening hours},"
            " {agent: faq}, {pause: 90s}, {list: Late}, {agent: support}]"
        )
        await run.act(hi)
        await _interactive(platform, user, "button")
        run.sent = await target.bot_messages(user)
        assert await run.check(offered) == (
            True,
            "buttons ['Opening hours', 'Talk to us']",
            "buttons ['Opening hours', 'Talk to us']",
        )
        await run.act(tap)  # the reply carries the button's id: faq:hours routes to faq
        assert (await run.check(agent))[0]
        before = platform.clock.now()
        await run.act(pause)
        assert platform.clock.now() - before >= 90
        await _interactive(platform, user, "list")
        await run.act(row)
        assert (await run.check(support))[0]
        wrong = _steps("[{button: Nope}]")[0]
        with pytest.raises(Exception, match="no button 'Nope' in the bot's last buttons"):
            await run.act(wrong)


async def test_a_reminder_at_a_given_time(tmp_path: Path) -> None:
    config = story_agents(
        "configs/agents.yaml", engines_file="tests/stories/engines.yaml", engine="shop"
    )
    [story] = parse_stories(
        _yaml(
            """
stories:
  - name: at
    steps:
      - user: remind me to fetch it
      - reminder: true
      - reminder: {at: "2030-01-07T11:00"}
      - reminder: {at: "2030-01-07T11:00:00+00:00", text: bike}
"""
        ),
        "t",
    )
    async with in_process_platform(config, data_dir=tmp_path) as platform:
        result = await run_story(in_process_target(platform), story, "15557770002")
    assert result.passed, [f.describe() for f in result.failures]


ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
URL_STORIES = """
stories:
  - name: over HTTP
    steps:
      - user: Hi
      - agent: assistant
      - reply: {equals: "echo: Hi"}
      - user: I want to complain
      - agent: support
      - tool: {name: handoff_to_human}
      - handoff: true
      - user: still there?
      - no_reply: true
  - name: fails over HTTP
    steps:
      - user: When are you open?
      - agent: support
"""


async def test_url_runs_against_a_running_platform_through_its_emulator_and_admin_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stories = tmp_path / "url.yaml"
    stories.write_text(URL_STORIES, encoding="utf-8")
    config = story_agents(
        "configs/agents.yaml", engines_file="tests/stories/engines.yaml", engine="shop"
    )
    async with (
        in_process_platform(config, data_dir=tmp_path / "data") as platform,
        serve_in_loop(platform.emulator_app) as emulator_url,
        serve_in_loop(platform.admin_app) as admin_url,
    ):
        argv = [
            "test",
            str(stories),
            "--url",
            admin_url,
            "--token",
            ADMIN,
            "--emulator-url",
            emulator_url,
            "--settle",
            "0.3",
        ]
        code = await asyncio.to_thread(main, argv)
    out = capsys.readouterr().out
    assert code == 1, out
    assert f"PASS  {stories}: over HTTP" in out
    assert "expected agent 'support', got 'faq'" in out

    # Simulated time needs the in-process platform: refused before anything runs.
    waiting = tmp_path / "wait.yaml"
    waiting.write_text("stories:\n  - name: w\n    steps: [{user: hi}, {wait: 2h}]\n")
    code = main(["test", str(waiting), "--url", "http://127.0.0.1:9", "--token", "t"])
    assert code == 2
    assert "step 2: a wait needs simulated time" in capsys.readouterr().err


async def test_url_quiet_waits_until_the_platform_stored_the_users_message(
    tmp_path: Path,
) -> None:
    """From outside, a message the ingress accepted may sit in the inbox before any session
    stores it: no chat, nothing unanswered, no reply yet. `poll_quiet` must not take that for
    quiet. The chat's session host is stopped while the user writes; quiet comes only once a new
    host took the message, and by then the reply is there."""
    config = story_agents("configs/agents.yaml", engine="scripted")
    user = "15557770009"
    async with (
        in_process_platform(config, data_dir=tmp_path / "data") as platform,
        serve_in_loop(platform.emulator_app) as emulator_url,
        serve_in_loop(platform.admin_app) as admin_url,
        httpx.AsyncClient(base_url=emulator_url) as emulator,
        httpx.AsyncClient(base_url=admin_url, headers=ADMIN_HEADERS) as admin,
    ):
        partition = partition_for(ChatKey(phone_number_id=PNID, user=user), len(platform.hosts))
        await platform.hosts[partition].close()
        checks: list[bool] = []
        twenty_checks = asyncio.Event()

        class CountingTarget(HttpTarget):
            async def stored(self, user: str, wamid: str) -> bool:
                checks.append(await super().stored(user, wamid))
                if len(checks) >= 20:  # 20 polls: far past the 0.1 s settle time
                    twenty_checks.set()
                return checks[-1]

        target = CountingTarget(
            emulator=emulator,
            admin=admin,
            phone_number_id=PNID,
            settle=lambda _: poll_quiet(target, user, settle_s=0.1, poll_s=0.02),
        )
        await target.send(user, {"type": "text", "text": "hello there"})
        waiting = asyncio.create_task(target.settle(user))
        async with asyncio.timeout(30):
            await twenty_checks.wait()
        assert not waiting.done() and not any(checks)

        platform.hosts[partition] = platform.make_host(partition)
        await platform.hosts[partition].start()
        async with asyncio.timeout(30):
            await waiting
        assert len(await target.bot_messages(user)) == 1  # answered before quiet was declared


def test_the_smollm2_stories_pass_on_the_bundled_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real model path (llama.cpp, the bundled SmolLM2-135M, as tests/integration/
    test_llm_llamacpp.py loads it): routing by rule, and a reply came."""
    code, out, _ = run_cli(["tests/stories/smollm2"], capsys)
    assert code == 0, out
    assert out.splitlines()[-1].startswith("3 stories: 3 passed")


async def test_the_turns_route_of_the_admin_api(tmp_path: Path) -> None:
    """`GET /api/chats/{chat}/turns` (whatsray/admin/turns_api.py): token, unknown and bad
    chats, and a turn with its agent and tool call."""

    config = story_agents(
        "configs/agents.yaml", engines_file="tests/stories/engines.yaml", engine="shop"
    )
    async with in_process_platform(config, data_dir=tmp_path) as platform:
        target = in_process_target(platform)
        user = "15557770003"
        await target.send(user, {"type": "text", "text": "I want to complain"})
        await target.settle(user)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(platform.admin_app), base_url="http://admin"
        ) as anon:
            assert (await anon.get(f"/api/chats/{user}/turns")).status_code == 401
        admin = target.admin
        missing = await admin.get("/api/chats/15559999999/turns")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        assert (await admin.get(f"/api/chats/{PNID}%3A/turns")).status_code == 422
        assert (await admin.get(f"/api/chats/{user}/turns?limit=0")).status_code == 422
        body = (await admin.get(f"/api/chats/{PNID}%3A{user}/turns")).json()
        assert (body["chat"], body["agent"], body["handoff"]) == (f"{PNID}:{user}", "support", True)
        assert body["unanswered"] == 0
        [turn] = body["turns"]
        assert (turn["agent"], turn["outcome"]) == ("support", "handoff")
        [call] = turn["tool_calls"]
        assert call["name"] == "handoff_to_human" and call["status"] == "ok"
        assert call["arguments"] == {"reason": "the customer asked for a person"}
        assert len(turn["input_ids"]) == 1 and turn["reply_ids"]
