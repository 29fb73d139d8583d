"""The emulator over real loopback HTTP: uvicorn in a thread, then `whatsray emulator` as a
subprocess, each delivering signed webhooks to a real uvicorn receiver that verifies them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from whatsray.whatsapp.emulator import EmulatorConfig, StatusDelays, create_emulator_app
from whatsray.whatsapp.events import Event, MessageEvent, StatusEvent
from whatsray.whatsapp.parsing import parse_webhook
from whatsray.whatsapp.signature import SIGNATURE_HEADER, verify_signature

pytestmark = pytest.mark.integration

SECRET = "loopback-secret"
TOKEN = "loopback-token"
USER = "15551234567"
PNID = "106540352242922"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Receiver:
    """Verifies every signature (403 otherwise) and keeps the parsed events."""

    events: list[Event] = field(default_factory=list)
    refused: int = 0

    async def webhook(self, request: Request) -> Response:
        raw = await request.body()
        if not verify_signature(SECRET, raw, request.headers.get(SIGNATURE_HEADER)):
            self.refused += 1
            return Response(status_code=403)
        self.events.extend(parse_webhook(raw))
        return Response("ok")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/webhook", self.webhook, methods=["POST"])])

    def statuses(self) -> list[str]:
        return [e.status.value for e in self.events if isinstance(e, StatusEvent)]

    def texts(self) -> list[str | None]:
        return [e.text for e in self.events if isinstance(e, MessageEvent)]


def wait_until(condition: Callable[[], bool], what: str, limit: float = 15.0) -> None:
    """Poll for a condition; the limit only bounds a broken run, it is not a timing check."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    from tests.support.servers import serve_on_loopback

    hook = Receiver()
    with serve_on_loopback(hook.app()) as url:
        yield hook, f"{url}/webhook"


def send_text(client: httpx.Client, text: str) -> httpx.Response:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "to": f"+{USER}",
        "type": "text",
        "text": {"body": text},
    }
    return client.post(f"/v25.0/{PNID}/messages", json=body, headers=AUTH)


def test_emulator_on_loopback(receiver: tuple[Receiver, str]) -> None:
    from tests.support.servers import serve_on_loopback

    hook, webhook_url = receiver
    config = EmulatorConfig(
        app_secret=SECRET,
        access_token=TOKEN,
        webhook_url=webhook_url,
        status_delays=StatusDelays(sent=0.0, delivered=0.05, read=0.1),
    )
    with (
        serve_on_loopback(create_emulator_app(config)) as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        inbound = client.post(
            "/emulator/inbound",
            json={
                "from": USER,
                "profile_name": "Zoë",
                "message": {"type": "text", "text": "olá/?"},
            },
        )
        assert inbound.status_code == 200, inbound.text
        assert inbound.json()["delivery"]["delivered"] is True
        assert hook.texts() == ["olá/?"]

        sent = send_text(client, "hi there")
        assert sent.status_code == 200, sent.text
        wait_until(lambda: len(hook.statuses()) == 3, "three status webhooks")
        assert sorted(hook.statuses()) == ["delivered", "read", "sent"]
        assert hook.refused == 0

        # A day later over HTTP: the window has closed.
        client.post("/emulator/clock/advance", json={"seconds": 24 * 3600 + 1})
        closed = send_text(client, "too late")
        assert closed.status_code == 400
        assert closed.json()["error"]["code"] == 131047

        # Media links point back at the loopback server.
        media_id = client.post(
            f"/v25.0/{PNID}/media",
            data={"messaging_product": "whatsapp", "type": "text/plain"},
            files={"file": ("a.txt", b"hello file", "text/plain")},
            headers=AUTH,
        ).json()["id"]
        url = client.get(f"/v25.0/{media_id}", headers=AUTH).json()["url"]
        assert url.startswith(base)
        assert httpx.get(url, headers=AUTH).content == b"hello file"

        outbound = client.get("/emulator/outbound").json()
        assert [r["outcome"] for r in outbound] == ["accepted", "rejected"]


def test_whatsray_emulator_command(receiver: tuple[Receiver, str]) -> None:
    from tests.support.servers import free_port, wait_for_http

    hook, webhook_url = receiver
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "import sys; from whatsray.cli import main; sys.exit(main(sys.argv[1:]))",
        "emulator",
        "--port", str(port),
        "--webhook-url", webhook_url,
        "--app-secret", SECRET,
        "--access-token", TOKEN,
        "--sent-delay", "0",
        "--delivered-delay", "0.05",
        "--read-delay", "-1",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/emulator/health")
        with httpx.Client(base_url=base, timeout=10) as client:
            inbound = client.post(
                "/emulator/inbound", json={"from": USER, "message": {"type": "text", "text": "yo"}}
            )
            assert inbound.status_code == 200, inbound.text
            assert send_text(client, "hello").status_code == 200
            wait_until(lambda: len(hook.statuses()) == 2, "sent and delivered statuses")
            assert hook.texts() == ["yo"]
            unauthorised = client.post(f"/v25.0/{PNID}/messages", json={})
            assert unauthorised.status_code == 401
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    assert f"http://127.0.0.1:{port}/v25.0" in output
    assert TOKEN in output and SECRET in output
    assert "send     " in output  # one console line per send
    assert "webhook inbound" in output  # and per delivery
    assert "webhook status" in output
