"""What the story runner needs from a platform, and its one implementation over HTTP.

A target sends what a user does through the emulator's control API (`/emulator/inbound`,
`/emulator/media`), reads what the bot sent (`/emulator/outbound`), and reads the platform through
its admin API (`GET /api/chats/{chat}/turns`, `GET /api/jobs`). Both targets are this class: the
in-process platform (whatsray/in_process.py) hands it ASGI clients, a quiet check that
looks inside the platform, and a clock it can move; `--url` hands it real HTTP clients and the
polling quiet check below.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from whatsray.in_process import PNID, InProcessPlatform

__all__ = [
    "BotMessage",
    "ChatView",
    "HttpTarget",
    "JobView",
    "TargetError",
    "ToolCallView",
    "TurnView",
    "in_process_target",
    "poll_quiet",
]


class TargetError(RuntimeError):
    """The target refused or failed a request (a story step fails with this message)."""


@dataclass(frozen=True)
class BotMessage:
    """One message the bot sent to the user, as the emulator accepted it."""

    type: str
    text: str
    buttons: tuple[tuple[str, str], ...] = ()  # (id, title) of reply buttons
    rows: tuple[tuple[str, str], ...] = ()  # (id, title) of list rows
    body: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ToolCallView:
    name: str
    arguments: dict[str, Any]
    status: str


@dataclass(frozen=True)
class TurnView:
    turn_id: str
    agent: str | None
    outcome: str
    tool_calls: tuple[ToolCallView, ...]


@dataclass(frozen=True)
class ChatView:
    agent: str | None
    handoff: bool
    unanswered: int
    turns: tuple[TurnView, ...]


@dataclass(frozen=True)
class JobView:
    id: str
    name: str
    text: str
    next_run_at: float | None
    enabled: bool


def bot_message(body: dict[str, Any]) -> BotMessage:
    """A Graph API send body as the runner sees it: its text, buttons and list rows."""
    kind = str(body.get("type", "?"))
    if kind == "text":
        return BotMessage(kind, str(body.get("text", {}).get("body", "")), body=body)
    if kind == "interactive":
        inner = body.get("interactive", {})
        action = inner.get("action", {})
        buttons = tuple(
            (str(b.get("reply", {}).get("id", "")), str(b.get("reply", {}).get("title", "")))
            for b in action.get("buttons", [])
        )
        rows = tuple(
            (str(r.get("id", "")), str(r.get("title", "")))
            for section in action.get("sections", [])
            for r in section.get("rows", [])
        )
        text = str(inner.get("body", {}).get("text", ""))
        return BotMessage(kind, text, buttons, rows, body)
    if kind == "template":
        template = body.get("template", {})
        params = [
            str(p.get("text", ""))
            for c in template.get("components", [])
            for p in c.get("parameters", [])
        ]
        return BotMessage(kind, " ".join([f"[{template.get('name', '')}]", *params]), body=body)
    media = body.get(kind, {})
    caption = media.get("caption", "") if isinstance(media, dict) else ""
    return BotMessage(kind, str(caption), body=body)


Settle = Callable[[str], Awaitable[None]]


class HttpTarget:
    """A platform reached through its emulator's control API and its admin API.

    `settle(user)` returns once the platform is quiet for that user; `advance(seconds)` moves the
    platform's clock (None: simulated time is not available); `now()` is the platform's time."""

    def __init__(
        self,
        *,
        emulator: httpx.AsyncClient,
        admin: httpx.AsyncClient,
        phone_number_id: str,
        settle: Settle,
        now: Callable[[], float] = time.time,
        advance: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.emulator = emulator
        self.admin = admin
        self.phone_number_id = phone_number_id
        self._settle = settle
        self.now = now
        self._advance = advance
        self.last_sent: dict[str, str] = {}  # user -> the wamid of their latest message

    @property
    def can_advance(self) -> bool:
        return self._advance is not None

    def chat(self, user: str) -> str:
        return f"{self.phone_number_id}:{user}"

    async def send(self, user: str, message: dict[str, Any]) -> None:
        body = {"from": user, "phone_number_id": self.phone_number_id, "message": message}
        response = await self.emulator.post("/emulator/inbound", json=body)
        if response.status_code != 200:
            raise TargetError(f"the emulator refused the message: {response.text[:300]}")
        self.last_sent[user] = str(response.json()["wamid"])

    async def stored(self, user: str, wamid: str) -> bool:
        """Whether the platform stored the user's message `wamid` (among the chat's latest)."""
        chat = quote(self.chat(user), safe="")
        response = await self.admin.get(f"/api/messages/{chat}", params={"limit": 50})
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise TargetError(f"GET /api/messages/...: {response.status_code} {response.text}")
        return any(m["id"] == wamid for m in response.json()["messages"])

    async def upload_media(self, mime_type: str, text: str, filename: str | None) -> str:
        body = {"mime_type": mime_type, "text": text, "filename": filename}
        response = await self.emulator.post("/emulator/media", json=body)
        if response.status_code != 200:
            raise TargetError(f"the emulator refused the media: {response.text[:300]}")
        return str(response.json()["id"])

    async def settle(self, user: str) -> None:
        await self._settle(user)

    async def advance(self, seconds: float) -> None:
        if self._advance is None:
            raise TargetError("this target cannot move its clock")
        await self._advance(seconds)

    async def bot_messages(self, user: str) -> list[BotMessage]:
        """Every message the bot sent to `user` that the emulator accepted, oldest first."""
        response = await self.emulator.get(
            "/emulator/outbound", params={"to": user, "kind": "message"}
        )
        response.raise_for_status()
        return [
            bot_message(record["body"])
            for record in response.json()
            if record.get("outcome") == "accepted"
        ]

    async def chat_view(self, user: str) -> ChatView | None:
        response = await self.admin.get(f"/api/chats/{quote(self.chat(user), safe='')}/turns")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise TargetError(f"GET /api/chats/.../turns: {response.status_code} {response.text}")
        data = response.json()
        turns = tuple(
            TurnView(
                turn_id=t["turn_id"],
                agent=t["agent"],
                outcome=t["outcome"],
                tool_calls=tuple(
                    ToolCallView(c["name"], c["arguments"], c["status"]) for c in t["tool_calls"]
                ),
            )
            for t in data["turns"]
        )
        return ChatView(data["agent"], bool(data["handoff"]), int(data["unanswered"]), turns)

    async def jobs(self, user: str) -> list[JobView]:
        response = await self.admin.get("/api/jobs")
        if response.status_code != 200:
            raise TargetError(f"GET /api/jobs: {response.status_code} {response.text[:300]}")
        data = response.json()
        items = data.get("jobs", data) if isinstance(data, dict) else data
        return [
            JobView(
                id=str(j["id"]),
                name=str(j.get("name", "")),
                text=str((j.get("payload") or {}).get("text", "")),
                next_run_at=_timestamp(j.get("next_run_at")),
                enabled=bool(j.get("enabled", True)),
            )
            for j in items
            if j.get("chat") == self.chat(user)
        ]


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    from datetime import datetime

    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


async def poll_quiet(
    target: HttpTarget,
    user: str,
    *,
    settle_s: float = 1.0,
    within_s: float = 120.0,
    poll_s: float = 0.1,
) -> None:
    """Quiet, seen from outside (`--url`): the emulator has no webhook pending, the platform has
    stored the user's latest message (it may sit in the inbox a while after the webhook was
    accepted), no message of the user is unsettled (`unanswered`, unless the chat is handed
    off), and the bot's messages to the user did not change for `settle_s`. A `TargetError`
    after `within_s`."""
    deadline = time.monotonic() + within_s
    last: tuple[int, int] | None = None
    calm_since = time.monotonic()
    latest = target.last_sent.get(user)
    while True:
        pending = await target.emulator.get("/emulator/webhooks/pending")
        pending.raise_for_status()
        if latest is not None and await target.stored(user, latest):
            latest = None  # stored once is enough: it stays
        view = await target.chat_view(user)
        unanswered = 0 if view is None or view.handoff else view.unanswered
        unanswered += latest is not None
        sent = len(await target.bot_messages(user))
        seen = (sent, int(pending.json().get("pending", 0)) + unanswered)
        now = time.monotonic()
        if seen != last or seen[1]:
            last, calm_since = seen, now
        elif now - calm_since >= settle_s:
            return
        if now > deadline:
            raise TargetError(f"not quiet within {within_s:.0f} s (busy: {seen[1]})")
        await asyncio.sleep(poll_s)


def in_process_target(platform: InProcessPlatform) -> HttpTarget:
    """The target of a platform in this process: its emulator and admin API over ASGI, its
    quiet check, and simulated time."""
    return HttpTarget(
        emulator=platform.control,
        admin=platform.admin,
        phone_number_id=PNID,
        settle=platform.quiet,
        now=platform.clock.now,
        advance=platform.advance,
    )
