"""A stand-in for the jobs REST API (issue 5, section 2) that records what it was asked.

It answers like the spec and the shapes of whatsray/admin/jobs_api.py: Bearer auth and
`ErrorBody` refusals through the admin API's own guard, 201 with the job on create, `enabled`
flipped by start/stop, 404 for an unknown id, 422 naming the field for a cron trigger whose
expression is "not a cron", 204 on delete. The MCP tests check the tool-to-HTTP mapping
against it until they run against the real jobs API.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response

from whatsray.admin.auth import BearerAuth
from whatsray.admin.guard import AdminProblem, guarded_route_class

BAD_CRON = "not a cron"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class FakeJobsApi:
    token: str
    requests: list[Recorded] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def _record(self, request: Request) -> Any:
        body = await request.json() if await request.body() else None
        self.requests.append(
            Recorded(request.method, request.url.path, dict(request.query_params), body)
        )
        return body

    def _job(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise AdminProblem(404, "not_found", f"no job {job_id!r}")
        return self.jobs[job_id]

    @staticmethod
    def _check_trigger(trigger: Any) -> None:
        if isinstance(trigger, dict) and trigger.get("expression") == BAD_CRON:
            raise AdminProblem.invalid(
                ("body", "trigger", "expression"),
                f"{BAD_CRON!r} is not a cron expression (5 fields: minute hour day month weekday)",
                "invalid_cron",
            )

    def router(self) -> APIRouter:
        router = APIRouter(
            prefix="/api/jobs", route_class=guarded_route_class(BearerAuth(self.token))
        )

        @router.post("", status_code=201)
        async def create(request: Request) -> dict[str, Any]:
            body = await self._record(request)
            self._check_trigger(body.get("trigger"))
            job = {"id": f"job-{next(self._ids)}", **body, "enabled": True, "next_run_at": 1.0}
            self.jobs[job["id"]] = job
            return job

        @router.get("")
        async def list_jobs(request: Request) -> dict[str, Any]:
            await self._record(request)
            query = request.query_params
            jobs = [
                job
                for job in self.jobs.values()
                if all(job.get(key) == query[key] for key in ("chat", "kind") if key in query)
            ]
            return {"jobs": jobs}

        @router.get("/{job_id}")
        async def get(job_id: str, request: Request) -> dict[str, Any]:
            await self._record(request)
            return self._job(job_id)

        @router.patch("/{job_id}")
        async def update(job_id: str, request: Request) -> dict[str, Any]:
            changes = await self._record(request)
            job = self._job(job_id)
            self._check_trigger(changes.get("trigger"))
            job.update(changes)
            return job

        @router.delete("/{job_id}", status_code=204)
        async def delete(job_id: str, request: Request) -> Response:
            await self._record(request)
            self._job(job_id)
            del self.jobs[job_id]
            return Response(status_code=204)

        @router.post("/{job_id}/start")
        async def start(job_id: str, request: Request) -> dict[str, Any]:
            await self._record(request)
            job = self._job(job_id)
            job["enabled"] = True
            return job

        @router.post("/{job_id}/stop")
        async def stop(job_id: str, request: Request) -> dict[str, Any]:
            await self._record(request)
            job = self._job(job_id)
            job["enabled"] = False
            return job

        return router
