"""The Scheduler actor on real Ray, in the whole platform: Serve ingress with the jobs API, the
session hosts, store, outbox and scripted agents, the emulator as WhatsApp, a real Valkey.

- A one-shot reminder created through the REST API a few seconds ahead reaches the user once, as
  the agent's answer to it (the echo agent repeats its input).
- The Scheduler actor killed again and again around the fire times of an interval job (Ray
  restarts it): every fire time has exactly one run, and the user hears each run exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.quiet import wait_quiet
from tests.support.ray_serve import running_whatsray
from whatsray.settings import Settings
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID

AGENTS = Path(__file__).resolve().parents[1] / "data" / "agents.yaml"
TICK = "[Scheduled reminder] tick"


@dataclass
class Platform:
    settings: Settings
    api: httpx.Client
    emulator: httpx.Client

    @property
    def auth(self) -> dict[str, str]:
        token = self.settings.admin_token
        assert token is not None
        return {"Authorization": f"Bearer {token.get_secret_value()}"}

    def user_says(self, user: str, text: str) -> None:
        body = {"from": user, "message": {"type": "text", "text": text}}
        self.emulator.post("/emulator/inbound", json=body).raise_for_status()

    def texts_to(self, user: str, count: int, within_s: float = 30.0) -> list[str]:
        deadline = time.monotonic() + within_s
        while True:
            records = self.emulator.get("/emulator/outbound", params={"to": user}).json()
            texts = [r["body"]["text"]["body"] for r in records if r["outcome"] == "accepted"]
            if len(texts) >= count or time.monotonic() > deadline:
                return texts
            time.sleep(0.1)

    def wait_quiet(self) -> None:
        """Until nothing is left to deliver, send or retry (`tests/support/quiet.py`)."""
        wait_quiet(self.settings, self.emulator)

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        response = self.api.get(f"/api/jobs/{job_id}/runs?limit=500", headers=self.auth)
        response.raise_for_status()
        runs: list[dict[str, Any]] = response.json()["runs"]
        return sorted(runs, key=lambda r: r["scheduled_for"])


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_whatsray(
        tmp_path_factory.mktemp("scheduler"),
        api_timeout_s=60,
        ready_within_s=120,
        partitions=2,
        agents_file=AGENTS,
        scheduler_sweep_s=1.0,
    ) as running:
        yield Platform(running.settings, running.api, running.emulator)


def chat_of(user: str) -> str:
    return f"{DEFAULT_PHONE_NUMBER_ID}:{user}"


def test_a_one_shot_reminder_from_the_api_reaches_the_user_once(platform: Platform) -> None:
    user = "15552000001"
    platform.user_says(user, "hello")  # the user wrote first: the 24-hour window is open
    assert platform.texts_to(user, 1) == ["echo: hello"]
    run_at = datetime.now(UTC) + timedelta(seconds=4)
    response = platform.api.post(
        "/api/jobs",
        json={
            "name": "Call mom",
            "chat": chat_of(user),
            "payload": {"text": "call mom"},
            "trigger": {"type": "date", "run_at": run_at.isoformat()},
        },
        headers=platform.auth,
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["next_run_at"] == pytest.approx(run_at.timestamp())
    texts = platform.texts_to(user, 2, within_s=60)
    assert texts == ["echo: hello", "echo: [Scheduled reminder] call mom"]
    platform.wait_quiet()  # a second delivery would have arrived by now
    assert len(platform.texts_to(user, 0, within_s=0)) == 2
    [run] = platform.runs(job["id"])
    assert run["status"] == "dispatched" and run["scheduled_for"] == pytest.approx(
        run_at.timestamp()
    )
    bad = platform.api.post(
        "/api/jobs",
        json={
            "name": "x",
            "chat": chat_of(user),
            "payload": {"text": "x"},
            "trigger": {"type": "cron", "expression": "every day"},
        },
        headers=platform.auth,
    )
    assert bad.status_code == 422 and "invalid cron expression" in bad.json()["message"]


def test_killing_the_scheduler_around_fire_times_loses_and_doubles_nothing(
    platform: Platform,
) -> None:
    import ray

    import serve_app

    user, every = "15552000002", 3
    platform.user_says(user, "hi")
    assert platform.texts_to(user, 1) == ["echo: hi"]
    response = platform.api.post(
        "/api/jobs",
        json={
            "name": "tick",
            "chat": chat_of(user),
            "payload": {"text": "tick"},
            "trigger": {"type": "interval", "seconds": every},
            "misfire": {"grace_s": 120, "coalesce": False},
        },
        headers=platform.auth,
    )
    assert response.status_code == 201, response.text
    job = response.json()
    first = job["active_since"] + every
    for k, offset in ((1, -0.2), (2, 0.1), (4, 0.5)):  # just before, at and after fire times
        time.sleep(max(0.0, first + k * every + offset - time.time()))
        scheduler = serve_app.find_actor(serve_app.SCHEDULER_NAME)
        ray.kill(scheduler, no_restart=False)
    # The restarted scheduler catches up and keeps going: two fire times past the last kill.
    deadline = time.monotonic() + 60
    while not any(r["scheduled_for"] >= first + 6 * every for r in platform.runs(job["id"])):
        assert time.monotonic() < deadline, platform.runs(job["id"])
        time.sleep(0.2)
    stopped = platform.api.post(f"/api/jobs/{job['id']}/stop", headers=platform.auth)
    assert stopped.status_code == 200, stopped.text
    stop_at = time.time()
    time.sleep(every)

    runs = platform.runs(job["id"])
    times = [r["scheduled_for"] for r in runs]
    expected = [first + k * every for k in range(len(times))]
    assert times == pytest.approx(expected)  # one run per fire time: none doubled, no gap
    assert times[-1] >= stop_at - every - 2  # ... up to the stop: none forgotten
    assert len({r["run_id"] for r in runs}) == len(runs)
    assert all(r["status"] == "dispatched" for r in runs), runs
    # The user heard each run exactly once (turns may coalesce several runs into one reply):
    # every run is in the inbox (dispatched), so once quiet each has been answered, and a
    # second answer to any would be here too.
    platform.wait_quiet()
    heard = sum(t.count(TICK) for t in platform.texts_to(user, 0, within_s=0))
    assert heard == len(runs)
