"""The README's run command end to end: `whatsray local` as a real process on loopback.

A user message sent through the emulator reaches the webhook endpoint signed, verified and parsed; a
reply sent with the GraphClient to the emulator comes back as status webhooks; Ctrl-C stops it all.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port, wait_for_http
from whatsray.settings import LocalSecrets
from whatsray.whatsapp.graph_client import GraphClient

USER = "15551234567"


@dataclass
class LocalRun:
    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    webhook_url: str
    emulator_url: str
    secrets: dict[str, str]

    def wait_for_event(self, predicate: str, timeout: float = 15.0) -> dict[str, object]:
        """The first printed webhook event whose JSON contains `predicate`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line.startswith("webhook  <- ") and predicate in line:
                event: dict[str, object] = json.loads(line.removeprefix("webhook  <- "))
                return event
        raise AssertionError(f"no webhook event containing {predicate!r} within {timeout}s")


@pytest.fixture
def local_run(tmp_path: Path) -> Iterator[LocalRun]:
    http_port, emulator_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSRAY_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "whatsray.cli",
            "local",
            "--data-dir",
            str(tmp_path / "data"),
            "--http-port",
            str(http_port),
            "--emulator-port",
            str(emulator_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    try:
        wait_for_http(f"http://127.0.0.1:{http_port}/health")
        wait_for_http(f"http://127.0.0.1:{emulator_port}/emulator/outbound")
        yield LocalRun(
            process=process,
            lines=lines,
            webhook_url=f"http://127.0.0.1:{http_port}/webhook",
            emulator_url=f"http://127.0.0.1:{emulator_port}",
            secrets=LocalSecrets(tmp_path / "data").load_or_create(),
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_user_message_arrives_verified_and_parsed(local_run: LocalRun) -> None:
    response = httpx.post(
        f"{local_run.emulator_url}/emulator/inbound",
        json={
            "from": USER,
            "profile_name": "Ana",
            "message": {"type": "text", "text": "¿hola? ä/ö"},
        },
    )
    assert response.status_code == 200, response.text
    wamid = response.json()["wamid"]
    assert response.json()["delivery"]["delivered"] is True
    event = local_run.wait_for_event(wamid)
    assert event["kind"] == "message"
    assert event["text"] == "¿hola? ä/ö"
    assert str(event["chat"]).endswith(USER)


async def test_reply_through_graph_api_comes_back_as_statuses(local_run: LocalRun) -> None:
    async with httpx.AsyncClient(base_url=local_run.emulator_url) as http:
        inbound = {"from": USER, "message": {"type": "text", "text": "hi"}}
        (await http.post("/emulator/inbound", json=inbound)).raise_for_status()
        client = GraphClient(
            http,
            access_token=local_run.secrets["access_token"],
            phone_number_id="106540352242922",
            base_url=local_run.emulator_url,
        )
        result = await client.send_text(USER, "hello back")
        outbound = (await http.get("/emulator/outbound", params={"to": USER})).json()
    assert [m["body"]["text"]["body"] for m in outbound] == ["hello back"]
    assert local_run.wait_for_event(result.wamid)["type"] == "sent"


def test_handshake_uses_the_generated_verify_token(local_run: LocalRun) -> None:
    params = {"hub.mode": "subscribe", "hub.challenge": "42", "hub.verify_token": "wrong"}
    assert httpx.get(local_run.webhook_url, params=params).status_code == 403
    params["hub.verify_token"] = local_run.secrets["verify_token"]
    response = httpx.get(local_run.webhook_url, params=params)
    assert (response.status_code, response.text) == (200, "42")


def test_ctrl_c_stops_cleanly(local_run: LocalRun) -> None:
    local_run.process.send_signal(signal.SIGINT)
    assert local_run.process.wait(timeout=15) == 0
