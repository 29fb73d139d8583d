"""Run stories against a target: user steps in order, each followed by a wait until the platform
is quiet (never a fixed sleep), and the expectations after it checked against what came.

Replies: each user step (and each `wait`) starts a new set of "this step's replies", the bot's
messages to the user after it. `reply` checks the next unchecked one of them, in order, so a turn
that sends two messages is checked with two `reply` steps; replies of earlier steps that no `reply`
checked are skipped. `no_reply` holds when the step had no reply at all. `tool` looks at the tool
calls of the turns that ran since the last user step. An expectation that fails does not stop the
story (every failing step is reported); a user step the target refuses does.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from whatsray.stories.model import (
    Choice,
    Location,
    Media,
    ReminderCheck,
    ReplyCheck,
    Step,
    Story,
    ToolCheck,
    parse_duration,
)
from whatsray.stories.target import BotMessage, HttpTarget, TargetError

__all__ = ["StepResult", "StoryResult", "run_stories", "run_story"]

_MIME = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/ogg",
    "document": "application/pdf",
    "sticker": "image/webp",
}
REMINDER_SLACK_S = 120.0  # `reminder: {in: 2h}`: a reminder set to the minute, checked later


@dataclass(frozen=True)
class StepResult:
    index: int  # from 1, as in the file
    step: str
    ok: bool
    expected: str = ""
    got: str = ""

    def describe(self) -> str:
        return f"step {self.index} ({self.step}): expected {self.expected}, got {self.got}"


@dataclass
class StoryResult:
    story: Story
    user: str
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[StepResult]:
        return [s for s in self.steps if not s.ok]

    @property
    def passed(self) -> bool:
        return not self.failures


def _short(text: str, limit: int = 160) -> str:
    text = text.replace("\n", " ")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


class _Story:
    """One story's run: what the user did and which replies were checked."""

    def __init__(self, target: HttpTarget, user: str) -> None:
        self.target = target
        self.user = user
        self.sent: list[BotMessage] = []
        self.mark = 0  # bot messages before the latest user step
        self.cursor = 0  # the next reply `reply` checks
        self.seen_turns: set[str] = set()

    # --- user steps -------------------------------------------------------------------------

    async def act(self, step: Step) -> None:
        self.mark = self.cursor = len(await self.target.bot_messages(self.user))
        view = await self.target.chat_view(self.user)
        self.seen_turns = {t.turn_id for t in view.turns} if view else set()
        if step.kind in ("wait", "pause"):
            await self.target.advance(float(step.value))
        else:
            await self.target.send(self.user, await self.message(step))
        await self.target.settle(self.user)
        self.sent = await self.target.bot_messages(self.user)

    async def message(self, step: Step) -> dict[str, Any]:
        value = step.value
        if step.kind == "user":
            return {"type": "text", "text": value}
        if step.kind in ("button", "list"):
            choice = value if isinstance(value, Choice) else await self.choose(step.kind, value)
            kind = "button_reply" if step.kind == "button" else "list_reply"
            message: dict[str, Any] = {"type": kind, "id": choice.id, "title": choice.title}
            if choice.description:
                message["description"] = choice.description
            return message
        if isinstance(value, Media):
            media_id = await self.target.upload_media(
                _MIME[value.type], "a file sent in a story", value.filename
            )
            message = {"type": value.type, "media_id": media_id}
            if value.caption:
                message["caption"] = value.caption
            if value.filename:
                message["filename"] = value.filename
            return message
        if isinstance(value, Location):
            return {"type": "location", **value.model_dump(exclude_none=True)}
        raise TargetError(f"not a user step: {step.kind}")

    async def choose(self, kind: str, wanted: str) -> Choice:
        """The button or list row titled (or with the id) `wanted` of the last bot message that
        offered any."""
        what = "buttons" if kind == "button" else "rows"
        for message in reversed(await self.target.bot_messages(self.user)):
            options = message.buttons if kind == "button" else message.rows
            if options:
                for option_id, title in options:
                    if wanted in (option_id, title):
                        return Choice(id=option_id, title=title)
                offered = ", ".join(title for _, title in options)
                raise TargetError(f"no {kind} {wanted!r} in the bot's last {what}: {offered}")
        raise TargetError(
            f"the bot sent no message with {what} to tap (give {{id, title}} to answer one"
            " that came from elsewhere)"
        )

    # --- expectations -----------------------------------------------------------------------

    async def check(self, step: Step) -> tuple[bool, str, str]:
        """(ok, expected, got)."""
        value = step.value
        replies = self.sent[self.mark :]
        match step.kind:
            case "agent":
                view = await self.target.chat_view(self.user)
                got = "no chat" if view is None else repr(view.agent)
                return view is not None and view.agent == value, f"agent {value!r}", got
            case "handoff":
                view = await self.target.chat_view(self.user)
                got = "no chat" if view is None else f"handoff {view.handoff}"
                ok = (view.handoff if view else False) == value
                return ok, f"handoff {value}", got
            case "reply":
                return self.check_reply(value)
            case "no_reply":
                got = ", ".join(_short(m.text) for m in replies) or "no reply"
                return not replies, "no reply", got
            case "buttons":
                offered = [m for m in replies if m.buttons]
                titles = [t for _, t in offered[-1].buttons] if offered else []
                got = f"buttons {titles}" if offered else "no message with buttons"
                return titles == list(value), f"buttons {list(value)}", got
            case "tool":
                return await self.check_tool(value)
            case "reminder":
                return await self.check_reminder(value)
        raise ValueError(f"not an expectation: {step.kind}")

    def check_reply(self, check: ReplyCheck) -> tuple[bool, str, str]:
        replies = self.sent[self.mark :]
        if check.equals is not None:
            expected = f"a reply equal to {_short(check.equals)}"
        elif check.contains is not None:
            expected = f"a reply containing {_short(check.contains)}"
        else:
            expected = f"a reply matching /{check.matches}/"
        if self.cursor >= len(self.sent):
            checked = len(replies)
            got = "no reply" if not checked else f"no further reply ({checked} checked)"
            return False, expected, got
        text = self.sent[self.cursor].text
        self.cursor += 1
        if check.equals is not None:
            ok = text == check.equals
        elif check.contains is not None:
            ok = check.contains in text
        else:
            ok = re.search(check.matches or "", text) is not None
        return ok, expected, _short(text)

    async def check_tool(self, value: str | ToolCheck) -> tuple[bool, str, str]:
        check = value if isinstance(value, ToolCheck) else ToolCheck(name=value)
        view = await self.target.chat_view(self.user)
        calls = [
            c
            for t in (view.turns if view else ())
            if t.turn_id not in self.seen_turns
            for c in t.tool_calls
        ]
        expected = f"a call of {check.name}" + (
            f" with {check.arguments}" if check.arguments else ""
        )
        for call in calls:
            if call.name == check.name and all(
                k in call.arguments and call.arguments[k] == v for k, v in check.arguments.items()
            ):
                return True, expected, f"{call.name}({call.arguments})"
        got = ", ".join(f"{c.name}({c.arguments})" for c in calls) or "no tool call"
        return False, expected, got

    async def check_reminder(self, value: bool | ReminderCheck) -> tuple[bool, str, str]:
        check = value if isinstance(value, ReminderCheck) else ReminderCheck()
        jobs = await self.target.jobs(self.user)
        wanted: float | None = None
        parts = ["a reminder"]
        if check.text is not None:
            parts.append(f"with text containing {check.text!r}")
        if check.in_ is not None:
            wanted = self.target.now() + parse_duration(check.in_)
            parts.append(f"due in {check.in_}")
        if check.at is not None:
            moment = datetime.fromisoformat(check.at)
            wanted = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
            parts.append(f"due at {check.at}")
        slack = REMINDER_SLACK_S if check.in_ is not None else 1.0
        for job in jobs:
            if check.text is not None and check.text not in job.text:
                continue
            if wanted is not None and (
                job.next_run_at is None or abs(job.next_run_at - wanted) > slack
            ):
                continue
            return True, " ".join(parts), f"{job.name!r} ({job.text!r})"
        got = ", ".join(f"{j.text!r} due {_when(j.next_run_at)}" for j in jobs) or "no reminder"
        return False, " ".join(parts), got


def _when(at: float | None) -> str:
    if at is None:
        return "never (done or stopped)"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S UTC")


async def run_story(target: HttpTarget, story: Story, user: str) -> StoryResult:
    started = time.monotonic()
    result = StoryResult(story, user)
    run = _Story(target, user)
    for index, step in enumerate(story.steps, start=1):
        label = step.describe()
        try:
            if step.is_user_step:
                await run.act(step)
                result.steps.append(StepResult(index, label, True))
                continue
            ok, expected, got = await run.check(step)
        except (TargetError, TimeoutError) as exc:
            result.steps.append(StepResult(index, label, False, "the step to run", str(exc)))
            break
        result.steps.append(StepResult(index, label, ok, expected, got))
    result.seconds = time.monotonic() - started
    return result


async def run_stories(
    target: HttpTarget, stories: list[Story], users: list[str]
) -> list[StoryResult]:
    """Each story on its own user (`users[i]` unless the story names one)."""
    return [
        await run_story(target, story, story.user or user)
        for story, user in zip(stories, users, strict=True)
    ]
