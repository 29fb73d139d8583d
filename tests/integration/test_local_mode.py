"""The README's run command for real: `whatsray local` starts Ray, Serve, Valkey, DuckDB and the
emulator; a user gets an answer; Ctrl-C stops it all; the next start continues where it stopped.
The first start also runs `--prometheus` (one start less on CI): Ray's metrics on the pinned port,
a Prometheus that scrapes it and loads the alert rules, Ctrl-C stopping it with everything else.

The agents run on the scripted engine here (WHATSRAY_ENGINE_OVERRIDE) to keep the test fast; the
llama.cpp engine has its own tests.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.support.local_mode import SHUTDOWN_S, whatsray_local
from tests.support.prometheus import Prometheus, alert_rules
from tests.support.servers import free_port
from whatsray.settings import LocalSecrets
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID

USER = "15551234567"
SCRIPTED = {"WHATSRAY_ENGINE_OVERRIDE": "scripted"}  # the agents on the scripted engine


def reply_to(emulator: str, text: str) -> str:
    response = httpx.post(
        f"{emulator}/emulator/inbound",
        json={"from": USER, "message": {"type": "text", "text": text}},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sent = httpx.get(f"{emulator}/emulator/outbound", params={"to": USER}).json()
        if sent:
            body: str = sent[-1]["body"]["text"]["body"]
            return body
        time.sleep(0.25)
    raise AssertionError("no reply")


def test_run_chat_stop_and_continue(tmp_path: Path) -> None:
    data = tmp_path / "data"
    http_port, emulator_port, metrics_port, prometheus_port = (free_port() for _ in range(4))
    emulator = f"http://127.0.0.1:{emulator_port}"
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    watched = ("--metrics-port", str(metrics_port), "--prometheus")
    # As in a CI job started in the background: SIGINT ignored when `whatsray local` starts.
    # Ctrl-C (below) must still stop it and its `serve run`.
    with whatsray_local(
        data,
        http_port,
        emulator_port,
        *watched,
        "--prometheus-port",
        str(prometheus_port),
        env=SCRIPTED,
        ignore_sigint=True,
    ) as process:
        printed = banner(process.stdout)
        assert f"metrics     http://127.0.0.1:{metrics_port}/metrics" in printed
        assert f"prometheus  {prometheus}" in printed
        assert reply_to(emulator, "hello local") == "echo: hello local"
        check_prometheus(prometheus, metrics_port)
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=SHUTDOWN_S) == 0
    # `whatsray local` waits for its Prometheus before it exits: nothing listens any more.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{prometheus}/-/ready", timeout=5)
    assert (data / "prometheus" / "data").is_dir()
    # Started again on the same data: the chat's history is still there.
    with whatsray_local(data, http_port, emulator_port, env=SCRIPTED, ignore_sigint=True):
        admin = LocalSecrets(data).load_or_create()["admin_token"]
        chat = f"{DEFAULT_PHONE_NUMBER_ID}:{USER}"
        history = httpx.get(
            f"http://127.0.0.1:{http_port}/api/messages/{chat}",
            headers={"Authorization": f"Bearer {admin}"},
        ).json()["messages"]
        assert [m["text"] for m in history] == ["hello local", "echo: hello local"]


def banner(output: IO[str] | None) -> str:
    """The rest of the banner `whatsray_local` stopped in, up to its last line."""
    assert output is not None
    lines = []
    for line in output:
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            return "".join(lines)
    raise AssertionError(f"the banner ended early: {''.join(lines)}")


def check_prometheus(url: str, metrics_port: int) -> None:
    """`--prometheus` (docs/metrics.md, "Locally"): it scrapes Ray's pinned port, whatsray's
    metrics arrive under their plain names, and every alert rule loads and evaluates."""
    prom = Prometheus(url, httpx.Client(timeout=10))
    (target,) = prom.targets()
    assert target["labels"]["instance"] == f"127.0.0.1:{metrics_port}"
    prom.wait_until('up{job="whatsray"}', lambda r: bool(r) and r[0]["value"][1] == "1")
    # The port is Ray's (its own metrics), and whatsray's arrive without Ray's prefix.
    prom.wait_until('count({__name__=~"ray_node_.+"})', bool, timeout=60)
    prom.wait_until("sum(whatsray_turns_total)", bool, timeout=60)
    assert prom.query('{__name__=~"ray_whatsray_.+"}') == []
    loaded = prom.evaluated_rules()
    assert sorted(r["name"] for r in loaded) == sorted(r["alert"] for r in alert_rules())
    assert {r["name"]: r.get("lastError") for r in loaded if r["health"] != "ok"} == {}
