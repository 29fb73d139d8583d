"""Logs on a real Ray (docs/logging.md): the platform runs with known secrets and JSON logs; after a
message, a retried send, a bad signature, handshakes and admin calls with right and wrong tokens,
no log file of the Ray session and no HTTP answer holds a secret, and the message's wamid is in
the log lines of the ingress, of its session host and of the outbox.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_platform_ray import AGENTS, PARTITIONS, Platform
from tests.support.ray_serve import running_whatsray
from whatsray.inbox import partition_for
from whatsray.observability.logs import FIELDS, chat_hash
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID
from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.signature import SIGNATURE_HEADER

USER = "15550004242"
# Random each run, and long: a secret found in a log was put there by this run.
SECRETS = {
    name: f"logtest-{name.replace('_', '-')}-{secrets.token_hex(12)}"
    for name in ("app_secret", "access_token", "verify_token", "admin_token")
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_whatsray(
        tmp_path_factory.mktemp("logs"),
        partitions=PARTITIONS,
        agents_file=AGENTS,
        log_format="json",
        **SECRETS,
    ) as running:
        yield Platform(running.settings, running.api, running.emulator, running.valkey)


def exercise(platform: Platform) -> tuple[str, list[httpx.Response]]:
    """A message whose first send Meta refuses with 130429 (retried), and every kind of request
    a secret could leak through. Returns the message's wamid and the HTTP answers."""
    answers: list[httpx.Response] = []
    api, token = platform.api, SECRETS["admin_token"]
    fault = {"next_errors": {"code": 130429, "count": 1}, "error_rate": 0.0}
    platform.emulator.post("/emulator/faults", json=fault).raise_for_status()
    sent = platform.user_says(USER, "hello logs")
    assert sent.status_code == 200, sent.text
    wamid: str = sent.json()["wamid"]
    assert platform.texts_to(USER, 1, within_s=60) == ["echo: hello logs"]
    platform.emulator.delete("/emulator/faults").raise_for_status()
    body = b'{"object": "whatsapp_business_account", "entry": []}'
    answers += [
        api.post("/webhook", content=body, headers={SIGNATURE_HEADER: "sha256=" + "0" * 64}),
        api.post("/webhook", content=body),
    ]
    handshake = {"hub.mode": "subscribe", "hub.challenge": "1234"}
    answers += [
        api.get("/webhook", params={**handshake, "hub.verify_token": SECRETS["verify_token"]}),
        api.get("/webhook", params={**handshake, "hub.verify_token": "not-the-token"}),
    ]
    for headers in ({"Authorization": "Bearer wrong-token"}, {}):
        answers.append(api.get("/api/chats", headers=headers))
    right = {"Authorization": f"Bearer {token}"}
    answers += [api.get("/api/chats", headers=right), api.get("/api/dead-letters", headers=right)]
    assert [a.status_code for a in answers] == [403, 401, 200, 403, 403, 401, 200, 200]
    platform.wait_quiet()  # every line of the message's path is written by now
    return wamid, answers


def session_logs() -> list[Path]:
    import ray

    node = ray._private.worker._global_node  # type: ignore[attr-defined]
    logs = Path(node.get_session_dir_path()) / "logs"
    files = [p for p in logs.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    # What the test reads must exist: an empty glob would pass every check below.
    assert any(n.startswith("worker-") and n.endswith(".err") for n in names), sorted(names)
    assert any(p.parent.name == "serve" for p in files), sorted(names)
    return files


def json_lines(files: list[Path]) -> list[dict[str, Any]]:
    """Our JSON log lines (each an object with time, level, logger and message)."""
    entries = []
    for path in files:
        if not path.name.startswith("worker-"):
            continue
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if {"time", "level", "logger", "message"} <= entry.keys():
                    entries.append(entry)
    return entries


def test_no_secret_in_any_log_or_answer_and_the_wamid_in_every_actor(platform: Platform) -> None:
    wamid, answers = exercise(platform)
    for answer in answers:
        for name, secret in SECRETS.items():
            assert secret not in answer.text, (name, answer.request.url.path, answer.text)
    files = session_logs()
    for path in files:
        text = path.read_text(errors="replace")
        for name, secret in SECRETS.items():
            assert secret not in text, f"{name} in {path}"

    entries = json_lines(files)
    chat = ChatKey(phone_number_id=DEFAULT_PHONE_NUMBER_ID, user=USER)
    partition = partition_for(chat, PARTITIONS)
    ours = [e for e in entries if wamid in str(e.get("wamid", "")).split(",")]
    by_actor: dict[str, list[dict[str, Any]]] = {}
    for entry in ours:
        by_actor.setdefault(str(entry.get("actor")), []).append(entry)
    host, outbox = f"session-host-{partition}", f"outbox-{DEFAULT_PHONE_NUMBER_ID}"
    assert {"ingress", host, outbox} <= by_actor.keys(), by_actor.keys()
    [appended] = [e for e in by_actor["ingress"] if "appended" in e["message"]]
    assert appended["partition"] == partition and appended["level"] == "INFO"
    [turn] = [e for e in by_actor[host] if e["message"].startswith("turn committed")]
    assert turn["partition"] == partition and turn["turn_id"].startswith("turn-")
    messages = [e["message"] for e in by_actor[outbox]]
    assert any(m.startswith("retrying") for m in messages), messages  # the 130429
    [accepted] = [e for e in by_actor[outbox] if e["message"].startswith("accepted by Meta")]
    assert accepted["outbound_id"] == f"{turn['turn_id']}:0"
    for entry in (appended, turn, accepted):
        assert entry["chat"] == chat_hash(chat)
    # The fields we add never hold a phone number or a chat key, on any line.
    for entry in entries:
        for field in FIELDS:
            assert USER not in str(entry.get(field, "")), entry
        assert re.fullmatch(r"[0-9a-f]{12}", str(entry.get("chat", "0" * 12))), entry
