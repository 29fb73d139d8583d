"""An upgrade under load (docs/cluster.md, "Upgrades"): release A runs, users keep writing, a
deploy of release B (whose agent answers differently) replaces every actor while traffic flows.
Every message is answered exactly once and in order, what is sent after the switch is answered
by B, and no actor of A is left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.echo_agents import ECHO_AGENTS_YAML
from tests.support.quiet import wait_quiet
from tests.support.ray_serve import RunningWhatsray, running_whatsray
from whatsray.release import releases_running
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID

CHATS = 6
MESSAGES = 24  # per chat, one every PACE_S
PACE_S = 0.15
SWITCH_AFTER = 6  # messages per chat sent before the deploy of B starts
PARTITIONS = 2


def agents_file(path: Path, prefix: str) -> Path:
    """The echo agent, answering `prefix` + the message; one turn per message (enqueue), so
    that every message has a reply of its own to count."""
    text = ECHO_AGENTS_YAML.format(double_texting="enqueue")
    path.write_text(text.replace("mode: echo", f"mode: echo\n    prefix: {prefix!r}"))
    return path


def user(chat: int) -> str:
    return f"1555300{chat:04d}"


@dataclass
class Traffic:
    """One thread per chat, each writing its numbered messages in order, paced."""

    emulator: httpx.Client
    sent: dict[int, list[tuple[str, float]]] = field(default_factory=dict)  # (text, when)
    started: threading.Barrier = field(default_factory=lambda: threading.Barrier(CHATS + 1))

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._chat, args=(c,)) for c in range(CHATS)]
        for thread in threads:
            thread.start()
        return threads

    def _chat(self, chat: int) -> None:
        mine = self.sent.setdefault(chat, [])
        for n in range(MESSAGES):
            if n == SWITCH_AFTER:
                self.started.wait()
            text = f"c{chat}-m{n}"
            body = {"from": user(chat), "message": {"type": "text", "text": text}}
            # Accepted by "Meta" (a refused delivery is retried by the emulator, as by Meta).
            assert self.emulator.post("/emulator/inbound", json=body).json()["wamid"]
            mine.append((text, time.monotonic()))
            time.sleep(PACE_S)


def live_releases() -> dict[str, list[str]]:
    import serve_app
    from actors.rollout import named_actors

    return releases_running(named_actors(serve_app.NAMESPACE))


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningWhatsray]:
    agents = agents_file(tmp_path / "agents-a.yaml", "A: ")
    with running_whatsray(tmp_path / "data", partitions=PARTITIONS, agents_file=agents) as up:
        yield up


def test_a_deploy_under_load_replaces_every_actor_and_answers_each_message_once(
    running: RunningWhatsray, tmp_path: Path
) -> None:
    from ray import serve

    import serve_app

    [release_a] = live_releases()
    traffic = Traffic(running.emulator)
    threads = traffic.run()
    traffic.started.wait()  # every chat is mid-conversation
    settings_b = running.settings.model_copy(
        update={"agents_file": agents_file(tmp_path / "agents-b.yaml", "B: ")}
    )
    deploying = time.monotonic()
    serve.run(serve_app.build_app(settings_b), name="whatsray", route_prefix="/")
    switched = time.monotonic()  # the new ingress answers: release B took over
    print(f"deploy of release B under load: {switched - deploying:.1f} s")  # for docs/cluster.md
    for thread in threads:
        thread.join()
    wait_quiet(running.settings, running.emulator, within_s=180)

    releases = live_releases()
    assert list(releases) != [release_a] and len(releases) == 1, releases
    [release_b] = releases
    assert running.api.get("/ready").json()["release"] == release_b
    assert sorted(releases[release_b]) == sorted(
        [
            "store",
            "scheduler",
            "router",
            "agent-echo-0",
            f"outbox-{DEFAULT_PHONE_NUMBER_ID}",
            *(f"session-host-{p}" for p in range(PARTITIONS)),
        ]
    )

    for chat in range(CHATS):
        replies = _replies(running.emulator, user(chat))
        texts = [text for text, _ in traffic.sent[chat]]
        # Exactly once and in order: the replies, prefix aside, are the messages.
        assert [r.split(": ", 1)[1] for r in replies] == texts, (chat, replies)
        prefixes = [r.split(": ", 1)[0] for r in replies]
        # A then B, never back: no partition was served by both releases at once.
        assert prefixes == sorted(prefixes), (chat, prefixes)
        after = {text for text, when in traffic.sent[chat] if when > switched}
        assert after, "the deploy took longer than the traffic: nothing was sent after it"
        assert all(r.startswith("B: ") for r in replies if r.split(": ", 1)[1] in after)

    unresolved = running.api.get(
        "/api/inbound/unresolved",
        params={"older_than_s": 0},
        headers={"Authorization": f"Bearer {_admin_token(running)}"},
    ).json()
    assert unresolved["count"] == 0, unresolved


def _replies(emulator: httpx.Client, to: str) -> list[str]:
    records = emulator.get("/emulator/outbound", params={"to": to}).json()
    return [r["body"]["text"]["body"] for r in records if r["outcome"] == "accepted"]


def _admin_token(running: RunningWhatsray) -> str:
    token = running.settings.admin_token
    assert token is not None
    return token.get_secret_value()
