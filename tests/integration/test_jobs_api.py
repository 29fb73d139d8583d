"""The jobs REST API through FastAPI (httpx ASGITransport), over the real scheduler core and a
real DuckDB store, on a fake clock: auth on every route, every route, every 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.store_helpers import PNID, FakeClock
from tests.support.recording_sink import RecordingSink
from whatsray.admin.jobs_api import create_jobs_router
from whatsray.scheduling import SchedulerCore, default_system_jobs
from whatsray.store import Store

TOKEN = "jobs-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC).timestamp()
CHAT = f"{PNID}:15551234567"


class Api:
    def __init__(self, client: httpx.AsyncClient, core: SchedulerCore, clock: FakeClock) -> None:
        self.client, self.core, self.clock = client, core, clock
        self.ids = iter(f"job_{n}" for n in range(1000))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    clock = FakeClock(T0)
    async with Store(tmp_path / "api.duckdb", now=clock) as store:
        core = SchedulerCore(
            store, RecordingSink(), now=clock, timers=False, system_jobs=default_system_jobs()
        )
        await core.start()
        app = FastAPI()
        holder: dict[str, Api] = {}
        app.include_router(
            create_jobs_router(admin_token=TOKEN, jobs=core, new_id=lambda: next(holder["api"].ids))
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://test"
        ) as client:
            holder["api"] = Api(client, core, clock)
            yield holder["api"]
        await core.close()


def reminder(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Call mom",
        "chat": CHAT,
        "payload": {"text": "call mom"},
        "trigger": {"type": "date", "run_at": "2025-06-03T09:00:00"},
        "timezone": "Europe/Berlin",
    }
    body.update(changes)
    return body


async def created(api: Api, **changes: Any) -> dict[str, Any]:
    response = await api.client.post("/api/jobs", json=reminder(**changes), headers=AUTH)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


ROUTES = [
    ("POST", "/api/jobs"),
    ("GET", "/api/jobs"),
    ("GET", "/api/jobs/x"),
    ("PATCH", "/api/jobs/x"),
    ("DELETE", "/api/jobs/x"),
    ("POST", "/api/jobs/x/start"),
    ("POST", "/api/jobs/x/stop"),
    ("GET", "/api/jobs/x/runs"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_needs_the_admin_token(api: Api, method: str, path: str) -> None:
    missing = await api.client.request(method, path, json={"bad": "body"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"] == "unauthorized"
    wrong = await api.client.request(
        method, path, json={}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"


async def test_create_get_and_list_a_reminder(api: Api) -> None:
    job = await created(api)
    assert job["id"] == "job_0" and job["kind"] == "reminder" and job["enabled"] is True
    assert job["trigger"] == {"type": "date", "run_at": "2025-06-03T09:00:00"}
    assert job["next_run_at"] == datetime(2025, 6, 3, 7, 0, tzinfo=UTC).timestamp()
    assert job["misfire"] == {"grace_s": 300.0, "coalesce": True}
    got = await api.client.get("/api/jobs/job_0", headers=AUTH)
    assert got.status_code == 200 and got.json() == job
    listed = await api.client.get("/api/jobs", params={"kind": "reminder"}, headers=AUTH)
    assert [j["id"] for j in listed.json()["jobs"]] == ["job_0"]
    by_chat = await api.client.get("/api/jobs", params={"chat": CHAT}, headers=AUTH)
    assert [j["id"] for j in by_chat.json()["jobs"]] == ["job_0"]
    system = await api.client.get("/api/jobs", params={"kind": "system"}, headers=AUTH)
    assert {j["kind"] for j in system.json()["jobs"]} == {"system"}
    assert len(system.json()["jobs"]) == 3


async def test_a_client_id_makes_a_retried_post_create_once(api: Api) -> None:
    first = await created(api, id="mom-0603")
    again = await api.client.post("/api/jobs", json=reminder(id="mom-0603"), headers=AUTH)
    assert again.status_code == 201 and again.json() == first
    other = await api.client.post(
        "/api/jobs", json=reminder(id="mom-0603", name="Call dad"), headers=AUTH
    )
    assert other.status_code == 409
    assert other.json() == {
        "error": "conflict",
        "message": "job id 'mom-0603' is taken by another definition",
    }


@pytest.mark.parametrize(
    ("changes", "where", "fragment"),
    [
        (
            {"trigger": {"type": "cron", "expression": "0 25 * * *"}},
            "body field 'trigger.expression'",
            "invalid cron expression '0 25 * * *'",
        ),
        ({"timezone": "Moon/Base"}, "body field 'timezone'", "unknown time zone 'Moon/Base'"),
        ({"payload": {"text": ""}}, "body field 'payload.text'", "non-empty text"),
        ({"payload": {"txt": "x"}}, "body field 'payload.txt'", "unknown field"),
        ({"chat": "15551234567"}, "body field 'chat'", "not a chat key"),
        ({"chat": None}, "body field 'chat'", "needs the chat"),
        (
            {"trigger": {"type": "date", "run_at": "2020-01-01T00:00:00Z"}},
            "body field 'trigger.run_at'",
            "in the past",
        ),
        (
            {"trigger": {"type": "interval", "seconds": 0}},
            "body field 'trigger.interval.seconds'",
            "greater than or equal to 1",
        ),
        ({"trigger": {"type": "hourly"}}, "body field 'trigger'", "tag"),
        (
            {"quiet_hours": {"start": "22", "end": "08:00"}},
            "body field 'quiet_hours.start'",
            "HH:MM",
        ),
        ({"kind": "system"}, "body field 'chat'", "no chat"),
        ({"misfire": {"grace_s": -1}}, "body field 'misfire.grace_s'", "greater than or equal"),
        ({"surprise": 1}, "body field 'surprise'", "Extra inputs"),
    ],
)
async def test_invalid_jobs_get_a_422_that_names_the_problem(
    api: Api, changes: dict[str, Any], where: str, fragment: str
) -> None:
    response = await api.client.post("/api/jobs", json=reminder(**changes), headers=AUTH)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["message"].startswith(where), body["message"]
    assert fragment in body["message"], body["message"]
    listed = await api.client.get("/api/jobs", params={"kind": "reminder"}, headers=AUTH)
    assert listed.json()["jobs"] == []  # nothing was created


async def test_a_body_that_is_not_json_is_a_422(api: Api) -> None:
    response = await api.client.post(
        "/api/jobs", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422 and "not valid JSON" in response.json()["message"]


@pytest.mark.parametrize(("method", "path"), ROUTES[2:])
async def test_unknown_ids_are_a_404(api: Api, method: str, path: str) -> None:
    body = {"name": "x"} if method == "PATCH" else None
    response = await api.client.request(method, path, json=body, headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "no job 'x'"}


async def test_patch_changes_a_job_and_refuses_bad_changes(api: Api) -> None:
    await created(api, trigger={"type": "cron", "expression": "0 9 * * 1-5"})
    api.clock.advance(60)
    response = await api.client.patch(
        "/api/jobs/job_0",
        json={"name": "Call mom (weekdays)", "quiet_hours": {"start": "22:00", "end": "08:00"}},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["name"] == "Call mom (weekdays)" and job["quiet_hours"]["policy"] == "defer"
    assert job["updated_at"] == T0 + 60 and job["active_since"] == T0  # same schedule
    bad = await api.client.patch(
        "/api/jobs/job_0", json={"trigger": {"type": "cron", "expression": "* *"}}, headers=AUTH
    )
    assert bad.status_code == 422 and "expected 5 fields" in bad.json()["message"]
    for body, fragment in (
        ({}, "give at least one field"),
        ({"chat": CHAT}, "Extra inputs"),
        ({"name": None}, "cannot be null"),
    ):
        refused = await api.client.patch("/api/jobs/job_0", json=body, headers=AUTH)
        assert refused.status_code == 422 and fragment in refused.json()["message"]
    cleared = await api.client.patch("/api/jobs/job_0", json={"quiet_hours": None}, headers=AUTH)
    assert cleared.json()["quiet_hours"] is None


async def test_stop_start_runs_and_delete(api: Api) -> None:
    await created(api, trigger={"type": "interval", "seconds": 60})
    stopped = await api.client.post("/api/jobs/job_0/stop", headers=AUTH)
    assert stopped.status_code == 200
    assert stopped.json()["enabled"] is False and stopped.json()["next_run_at"] is None
    started = await api.client.post("/api/jobs/job_0/start", headers=AUTH)
    assert started.json()["enabled"] is True and started.json()["next_run_at"] == T0 + 60
    for _ in range(3):
        api.clock.advance(60)
        await api.core.reconcile_all()
    page = await api.client.get("/api/jobs/job_0/runs", params={"limit": 2}, headers=AUTH)
    assert page.status_code == 200
    body = page.json()
    assert [r["status"] for r in body["runs"]] == ["dispatched", "dispatched"]
    assert body["runs"][0]["run_id"] == "job_0@2025-06-02T08:03:00Z"
    assert (body["limit"], body["offset"], body["next_offset"]) == (2, 0, 2)
    rest = await api.client.get("/api/jobs/job_0/runs?limit=2&offset=2", headers=AUTH)
    assert len(rest.json()["runs"]) == 1 and rest.json()["next_offset"] is None
    bad_page = await api.client.get("/api/jobs/job_0/runs?limit=0", headers=AUTH)
    assert bad_page.status_code == 422 and "query parameter 'limit'" in bad_page.json()["message"]
    deleted = await api.client.delete("/api/jobs/job_0", headers=AUTH)
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await api.client.get("/api/jobs/job_0", headers=AUTH)).status_code == 404


async def test_system_jobs_can_be_stopped_but_not_deleted(api: Api) -> None:
    refused = await api.client.delete("/api/jobs/system:daily-summary", headers=AUTH)
    assert refused.status_code == 409 and "stop it instead" in refused.json()["message"]
    stopped = await api.client.post("/api/jobs/system:daily-summary/stop", headers=AUTH)
    assert stopped.status_code == 200 and stopped.json()["enabled"] is False


async def test_the_routes_are_in_the_openapi_document(api: Api) -> None:
    app = FastAPI()
    app.include_router(create_jobs_router(admin_token=TOKEN, jobs=api.core))
    paths = app.openapi()["paths"]
    assert set(paths["/api/jobs"]) == {"post", "get"}
    assert set(paths["/api/jobs/{job_id}"]) == {"get", "patch", "delete"}
    assert {"/api/jobs/{job_id}/start", "/api/jobs/{job_id}/stop", "/api/jobs/{job_id}/runs"} <= (
        set(paths)
    )
