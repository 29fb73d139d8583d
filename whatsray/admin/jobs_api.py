"""The jobs REST API: scheduled reminders and system jobs, under `/api/jobs` (docs/scheduler.md).

`create_jobs_router(admin_token=..., jobs=...)` talks to a `whatsray.scheduling.JobsPort` only:
the `SchedulerCore` in tests, an actor proxy of the Scheduler on Ray. It shares the admin API's
guard: the Bearer admin token is checked before anything else, and every 4xx is an `ErrorBody`
(`invalid_request` 422 naming the field, `not_found` 404, `conflict` 409).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, Security
from fastapi.security import HTTPBearer

from whatsray.admin.auth import BearerAuth
from whatsray.admin.guard import AdminProblem, guarded_route_class
from whatsray.admin.jobs_models import JobRunsPage, JobsPage
from whatsray.admin.models import ErrorBody
from whatsray.scheduling import (
    Job,
    JobConflictError,
    JobPatch,
    JobSpec,
    JobsPort,
    JobValidationError,
    SchedulingError,
    UnknownJobError,
    new_job_id,
)

__all__ = ["create_jobs_router"]

MAX_PAGE = 500
_JOB_ID = Path(min_length=1, max_length=80, description="The job's id")
_BEARER_SCHEME = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The admin token (settings: `WHATSRAY_ADMIN_TOKEN`).",
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No bearer token (`WWW-Authenticate: Bearer`)."},
    403: {"model": ErrorBody, "description": "A wrong bearer token."},
    422: {"model": ErrorBody, "description": "Invalid parameters or body; `message` says which."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No job has this id."}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Refused by the job's state; `message` says why."}
}


def _problem(exc: Exception) -> AdminProblem:
    """The scheduler's refusal as a 4xx. Across Ray the error arrives wrapped (a subclass of
    both Ray's task error and the original, which is its `cause`): read the original."""
    cause = getattr(exc, "cause", exc)
    if not isinstance(cause, SchedulingError):
        cause = exc
    if isinstance(cause, JobValidationError):
        loc = ("body", *cause.field.split("."))
        return AdminProblem.invalid(loc, cause.message, "job_invalid")
    if isinstance(cause, UnknownJobError):
        return AdminProblem(404, "not_found", f"no job {cause.job_id!r}")
    if isinstance(cause, JobConflictError):
        return AdminProblem(409, "conflict", cause.message)
    raise exc


class _JobsApi:
    def __init__(self, jobs: JobsPort, new_id: Callable[[], str]) -> None:
        self.jobs = jobs
        self.new_id = new_id

    async def create(self, spec: JobSpec) -> Job:
        # Named here, before the call: a call retried (by Ray, or by the client with its own id)
        # finds the job it created instead of making a second one.
        named = spec if spec.id is not None else spec.model_copy(update={"id": self.new_id()})
        try:
            return await self.jobs.create_job(named)
        except SchedulingError as exc:
            raise _problem(exc) from None

    async def list(
        self,
        kind: Annotated[Literal["reminder", "system"] | None, Query()] = None,
        chat: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    ) -> JobsPage:
        return JobsPage(jobs=await self.jobs.list_jobs(kind=kind, chat=chat))

    async def get(self, job_id: Annotated[str, _JOB_ID]) -> Job:
        try:
            return await self.jobs.get_job(job_id)
        except SchedulingError as exc:
            raise _problem(exc) from None

    async def update(self, job_id: Annotated[str, _JOB_ID], patch: JobPatch) -> Job:
        if not patch.model_fields_set:
            raise AdminProblem.invalid(("body",), "give at least one field to change", "empty")
        try:
            return await self.jobs.update_job(job_id, patch)
        except SchedulingError as exc:
            raise _problem(exc) from None

    async def delete(self, job_id: Annotated[str, _JOB_ID]) -> Response:
        try:
            await self.jobs.delete_job(job_id)
        except SchedulingError as exc:
            raise _problem(exc) from None
        return Response(status_code=204)

    async def start(self, job_id: Annotated[str, _JOB_ID]) -> Job:
        try:
            return await self.jobs.start_job(job_id)
        except SchedulingError as exc:
            raise _problem(exc) from None

    async def stop(self, job_id: Annotated[str, _JOB_ID]) -> Job:
        try:
            return await self.jobs.stop_job(job_id)
        except SchedulingError as exc:
            raise _problem(exc) from None

    async def runs(
        self,
        job_id: Annotated[str, _JOB_ID],
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> JobRunsPage:
        try:
            fetched = await self.jobs.job_runs(job_id, limit + 1, offset)
        except SchedulingError as exc:
            raise _problem(exc) from None
        return JobRunsPage(
            runs=fetched[:limit],
            limit=limit,
            offset=offset,
            next_offset=offset + limit if len(fetched) > limit else None,
        )


def create_jobs_router(
    *, admin_token: str, jobs: JobsPort, new_id: Callable[[], str] = new_job_id
) -> APIRouter:
    """The jobs API under `/api/jobs`, guarded by `admin_token` (Bearer)."""
    api = _JobsApi(jobs, new_id)
    router = APIRouter(
        prefix="/api/jobs",
        tags=["jobs"],
        route_class=guarded_route_class(BearerAuth(admin_token)),
        dependencies=[Security(_BEARER_SCHEME)],
        responses=_ERRORS,
    )
    router.add_api_route(
        "",
        api.create,
        methods=["POST"],
        status_code=201,
        operation_id="create_job",
        summary="Create a job (a reminder for a chat, or a system job)",
        description=(
            "422 names what is wrong: an invalid cron expression, an unknown time zone, a bad"
            " payload, a chat that is not '<phone_number_id>:<user>', a one-shot date in the"
            " past. With an `id` that exists: the same definition answers that job (a retry),"
            " another one is a 409."
        ),
        responses=_CONFLICT,
    )
    router.add_api_route(
        "", api.list, methods=["GET"], operation_id="list_jobs", summary="Jobs, oldest first"
    )
    router.add_api_route(
        "/{job_id}",
        api.get,
        methods=["GET"],
        operation_id="get_job",
        summary="A job, with its next fire time",
        responses=_NOT_FOUND,
    )
    router.add_api_route(
        "/{job_id}",
        api.update,
        methods=["PATCH"],
        operation_id="update_job",
        summary="Change a job's name, payload, trigger, zone, quiet hours, misfire or state",
        description="A new trigger or time zone starts the schedule anew from now.",
        responses=_NOT_FOUND,
    )
    router.add_api_route(
        "/{job_id}",
        api.delete,
        methods=["DELETE"],
        status_code=204,
        response_class=Response,
        operation_id="delete_job",
        summary="Delete a job and its run history (system jobs: stop them instead)",
        responses={**_NOT_FOUND, **_CONFLICT},
    )
    router.add_api_route(
        "/{job_id}/start",
        api.start,
        methods=["POST"],
        operation_id="start_job",
        summary="Enable a job (runs missed while it was stopped are not made up for)",
        responses=_NOT_FOUND,
    )
    router.add_api_route(
        "/{job_id}/stop",
        api.stop,
        methods=["POST"],
        operation_id="stop_job",
        summary="Disable a job",
        responses=_NOT_FOUND,
    )
    router.add_api_route(
        "/{job_id}/runs",
        api.runs,
        methods=["GET"],
        operation_id="job_runs",
        summary="A job's run history, newest first",
        responses=_NOT_FOUND,
    )
    return router
