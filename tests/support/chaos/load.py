"""The load: `rate` messages a second, open loop, over `chats` chats, each message reaching the
webhook 1 to 3 times (some of the copies late, straight to `/webhook`)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import httpx

from tests.support.chaos.plan import ChaosPlan, Message, user_of
from whatsray.whatsapp.emulator.webhook_payloads import encode_webhook_body
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign


class Load:
    def __init__(self, plan: ChaosPlan, emulator_url: str, api_url: str, secret: str) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed + 1)
        self.emulator = httpx.AsyncClient(base_url=emulator_url, timeout=60)
        self.api = httpx.AsyncClient(base_url=api_url, timeout=30)
        self.secret = secret
        self.messages: dict[int, list[Message]] = {c: [] for c in range(plan.chats)}
        self.busy: set[int] = set()
        self.late: dict[int, dict[str, Any]] = {}  # chat -> the payload to deliver again, late
        self.tasks: set[asyncio.Task[None]] = set()
        self.late_failed = 0
        self.skipped = 0

    async def aclose(self) -> None:
        await self.emulator.aclose()
        await self.api.aclose()

    async def run(self, seconds: float) -> None:
        """Open loop: a message every 1/rate s, to the next chat (round robin) that is idle."""
        count = max(1, round(self.plan.rate * seconds))
        start = time.monotonic()
        cursor = 0
        for i in range(count):
            delay = start + i / self.plan.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for step in range(self.plan.chats):
                chat = (cursor + step) % self.plan.chats
                if chat not in self.busy:
                    cursor = chat + 1
                    self._spawn(self._send(chat))
                    break
            else:
                self.skipped += 1
        await self.drain()

    async def drain(self) -> None:
        """Until every send and late copy is done; then the late copies still held go out."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        for chat in list(self.late):
            self._spawn(self._redeliver(self.late.pop(chat)))
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, chat: int) -> None:
        self.busy.add(chat)
        try:
            messages = self.messages[chat]
            message = Message(chat, len(messages), f"k{chat}-m{len(messages)}")
            messages.append(message)
            message.copies = self.rng.randint(1, 3)
            message.late = message.copies > 1 and self.rng.random() < self.plan.late_share
            body = {
                "from": user_of(chat),
                "message": {"type": "text", "text": message.text},
                "duplicates": message.copies - 1 - int(message.late),
            }
            try:
                answer = await self.emulator.post("/emulator/inbound", json=body)
            except httpx.TransportError as exc:  # the emulator itself: should not happen
                message.first_status = -1
                raise RuntimeError(f"the emulator did not answer: {exc!r}") from exc
            message.first_status = answer.status_code
            reply = answer.json()
            message.wamid = reply.get("wamid")
            # The previous message's late copy goes now: after this one, out of order.
            previous = self.late.pop(chat, None)
            if previous is not None:
                self._spawn(self._redeliver(previous))
            if message.late:
                self.late[chat] = reply["payload"]
        finally:
            self.busy.discard(chat)

    async def _redeliver(self, payload: dict[str, Any]) -> None:
        """The same webhook once more, signed, to /webhook, as Meta delivers it again; retried
        (as Meta would) while the app answers anything but 200."""
        body = encode_webhook_body(payload)
        headers = {SIGNATURE_HEADER: sign(self.secret, body), "Content-Type": "application/json"}
        deadline = time.monotonic() + 300
        delay = 0.5
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                answer = await self.api.post("/webhook", content=body, headers=headers)
                if answer.status_code == 200:
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        self.late_failed += 1
