"""`whatsray webhook listen`: handshake, signed POSTs printed, bad ones refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.servers import free_port, wait_for_http
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "message_text.json"


def test_listen_verifies_parses_and_prints() -> None:
    port = free_port()
    env = {**os.environ, "WHATSRAY_APP_SECRET": "s3cret", "WHATSRAY_VERIFY_TOKEN": "tok"}
    process = subprocess.Popen(
        [sys.executable, "-m", "whatsray.cli", "webhook", "listen", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/webhook"
        wait_for_http(url)
        handshake = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "77"}
        assert httpx.get(url, params=handshake).text == "77"
        raw = FIXTURE.read_bytes()
        assert httpx.post(url, content=raw).status_code == 401
        wrong = {SIGNATURE_HEADER: sign("other", raw)}
        assert httpx.post(url, content=raw, headers=wrong).status_code == 403
        good = {SIGNATURE_HEADER: sign("s3cret", raw)}
        assert httpx.post(url, content=raw, headers=good).status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    printed = [line for line in output.splitlines() if line.startswith("webhook  <- ")]
    assert len(printed) == 1  # only the signed POST got through
    assert '"kind": "message"' in printed[0]


def test_listen_without_secrets_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSRAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "whatsray.cli", "webhook", "listen"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--app-secret" in result.stderr
