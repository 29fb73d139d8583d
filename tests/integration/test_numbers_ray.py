"""Two business numbers on one app, on real Ray, each on its own throughput tier
(`WHATSRAY_NUMBERS`): users write to both at once and an admin burst goes out from each.

The app runs as on a cluster, against the emulator as its Graph API, configured here on its own
(not from the app's settings): each number's tier at the emulator is the app's plus a little
headroom, so only a send past the number's own tier is refused. An outbox paced at the global
rate (80 msg/s) or at the other number's would be answered 130429: the test asserts none was.
(With the same tier on both sides, a send paced to the millisecond can still arrive a few ms
early, its connection faster than the burst's first one's: docs/outbox.md, "Order and rate
limits".) Every message is answered exactly once, from the number it was written to, in order
per chat, and nothing is left without an outcome.

In local mode the platform starts the emulator itself, with each number's tier from the same
settings: the second test checks that the numbers get theirs there.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.echo_agents import write_echo_agents
from tests.support.quiet import wait_quiet
from tests.support.ray_serve import running_whatsray
from tests.support.servers import serve_on_loopback
from whatsray.settings import Settings
from whatsray.whatsapp.emulator import BusinessNumber, EmulatorConfig, create_emulator_app

pytestmark = pytest.mark.integration

SLOW, FAST = "100000000000001", "100000000000002"  # phone number ids
TIERS = {SLOW: 3, FAST: 15}  # msg/s, WHATSRAY_NUMBERS; the global throughput stays 80
META_TIERS = {SLOW: 4.0, FAST: 18.0}  # what the emulator enforces: the tiers plus headroom
# Bursts past each number's tier, sent at once: the outbox paces them. At the global rate or the
# other number's, the slow number's burst (and at the global rate the fast one's) is refused.
BURSTS = {SLOW: 10, FAST: 40}
MESSAGES_PER_USER = 3
USERS = {  # who writes to which number; the first user writes to both
    SLOW: ["15557000001", "15557000002", "15557000003"],
    FAST: ["15557000001", "15557000004", "15557000005"],
}
ADMIN_TARGET = {SLOW: "15557000010", FAST: "15557000020"}  # each gets its number's burst
SECRETS = {
    "app_secret": "numbers-app-secret",
    "verify_token": "numbers-verify",
    "access_token": "numbers-graph-token",
    "admin_token": "numbers-admin-token",
}


@dataclass
class App:
    settings: Settings
    api: httpx.Client
    emulator: httpx.Client

    @property
    def auth(self) -> dict[str, str]:
        token = self.settings.admin_token  # given on a cluster, generated in local mode
        assert token is not None
        return {"Authorization": f"Bearer {token.get_secret_value()}"}

    def write(self, user: str, number: str, text: str) -> None:
        body = {"from": user, "phone_number_id": number, "message": {"type": "text", "text": text}}
        answer = self.emulator.post("/emulator/inbound", json=body)
        assert answer.status_code == 200, answer.text

    def admin_send(self, number: str, to: str, text: str) -> None:
        body = {"to": to, "text": text, "phone_number_id": number, "idempotency_key": text}
        answer = self.api.post("/api/send-message", json=body, headers=self.auth)
        assert answer.status_code == 202, answer.text

    def quiet(self) -> None:
        wait_quiet(self.settings, self.emulator, within_s=60)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    data = tmp_path
    emulator_config = EmulatorConfig(
        app_secret=SECRETS["app_secret"],
        access_token=SECRETS["access_token"],
        phone_numbers=tuple(BusinessNumber.parse(n, throughput_mps=META_TIERS[n]) for n in TIERS),
    )
    with (
        serve_on_loopback(create_emulator_app(emulator_config)) as emulator_url,
        httpx.Client(base_url=emulator_url, timeout=30) as emulator,
        running_whatsray(
            data,
            mode="cluster",  # Meta is the emulator above, at its URL
            graph_api_base_url=emulator_url,
            phone_number_ids=list(TIERS),
            throughput_mps=80,
            numbers={number: {"throughput_mps": tier} for number, tier in TIERS.items()},
            partitions=2,
            agents_file=write_echo_agents(data / "agents.yaml", "enqueue"),  # a reply each
            engine_override="scripted",
            **SECRETS,
        ) as running,
    ):
        webhook = f"http://127.0.0.1:{running.settings.http_port}/webhook"
        emulator.put("/emulator/webhook-url", json={"url": webhook}).raise_for_status()
        yield App(running.settings, running.api, emulator)


def texts(records: list[dict[str, Any]], number: str, user: str) -> list[str]:
    return [
        r["body"]["text"]["body"]
        for r in records
        if r["outcome"] == "accepted" and r["phone_number_id"] == number and r["recipient"] == user
    ]


def test_two_numbers_each_paced_by_its_own_tier(app: App) -> None:
    status = app.api.get("/api/status", headers=app.auth).json()
    assert {o["phone_number_id"]: o["throughput_mps"] for o in status["outboxes"]} == TIERS

    for number, user in ADMIN_TARGET.items():  # they write first: their windows open
        app.write(user, number, "hello")
    app.quiet()  # the hello replies are out: the bursts below start from full buckets

    def converse(chat: tuple[str, str]) -> None:
        number, user = chat
        for n in range(MESSAGES_PER_USER):
            app.write(user, number, f"{number[-1]}:{user[-2:]}:m{n}")

    def burst(number: str) -> None:
        sends = [f"admin-{number[-1]}-{i:02d}" for i in range(BURSTS[number])]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda t: app.admin_send(number, ADMIN_TARGET[number], t), sends))

    chats = [(number, user) for number, users in USERS.items() for user in users]
    with ThreadPoolExecutor(max_workers=len(chats) + len(BURSTS)) as pool:
        work = [pool.submit(converse, chat) for chat in chats]
        work += [pool.submit(burst, number) for number in BURSTS]
        for done in work:
            done.result()
    app.quiet()  # what was going to be sent (a duplicate, a retry) has been by now

    records: list[dict[str, Any]] = app.emulator.get("/emulator/outbound").json()
    refused = [(r["phone_number_id"], r["error_code"]) for r in records if r["error_code"]]
    assert refused == [], "an outbox sent past its number's tier"
    for number, user in chats:  # answered once each, in order, from the number written to
        expected = [f"echo: {number[-1]}:{user[-2:]}:m{n}" for n in range(MESSAGES_PER_USER)]
        assert texts(records, number, user) == expected, (number, user)
    for number, user in ADMIN_TARGET.items():
        sent = texts(records, number, user)
        assert sent[0] == "echo: hello"
        # Each once (sent concurrently: in any order), and nothing from the other number.
        assert sorted(sent[1:]) == [f"admin-{number[-1]}-{i:02d}" for i in range(BURSTS[number])]
        assert texts(records, SLOW if number == FAST else FAST, user) == []

    unresolved = app.api.get(
        "/api/inbound/unresolved", params={"older_than_s": 0}, headers=app.auth
    ).json()
    assert unresolved["count"] == 0, unresolved


def test_in_local_mode_the_emulator_gets_each_numbers_tier(tmp_path: Path) -> None:
    with running_whatsray(
        tmp_path,
        phone_number_ids=list(TIERS),
        numbers={number: {"throughput_mps": tier} for number, tier in TIERS.items()},
        agents_file=write_echo_agents(tmp_path / "agents.yaml", "enqueue"),
        engine_override="scripted",
    ) as running:
        numbers = running.emulator.get("/emulator/config").json()["phone_numbers"]
        assert {n["id"]: n["throughput_mps"] for n in numbers} == TIERS
        app = App(running.settings, running.api, running.emulator)
        status = app.api.get("/api/status", headers=app.auth).json()
        assert {o["phone_number_id"]: o["throughput_mps"] for o in status["outboxes"]} == TIERS
        for number in TIERS:
            app.write("15557000030", number, f"hi {number[-1]}")
        app.quiet()
        records: list[dict[str, Any]] = app.emulator.get("/emulator/outbound").json()
        for number in TIERS:
            assert texts(records, number, "15557000030") == [f"echo: hi {number[-1]}"]
