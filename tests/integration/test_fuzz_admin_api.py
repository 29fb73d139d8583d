"""The admin and jobs REST APIs fuzzed from their own OpenAPI document with schemathesis.

The deployment is real (tests/support/admin_stack.py: the admin router over a real DuckDB
`Store`, a real `Outbox` and the in-process emulator; the jobs router over a real
`SchedulerCore` on the same store), served by uvicorn on loopback, and every generated request
goes over real HTTP. Valid and invalid requests (schemathesis' positive and negative modes), most
with the admin token, some without or with a wrong one. For each answer:

- never a 5xx, and the answer conforms to the document (status code, content type, schema);
- a 4xx is a JSON `ErrorBody` whose `message` says what is wrong (a 422 names the field);
- a request without the token is a 401, with a wrong one a 403;
- a refused request changed nothing: every table of the store (hashed) and what the emulator
  received are the same after it as before (taken once the deployment is quiet).

Bounded (a fixed number of examples per operation, derandomized): the same run every time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.admin_stack import ADMIN_TOKEN, PNID, Admin, admin_stack
from tests.support.fuzzing import assert_refusal_names_the_problem, store_digest
from tests.support.loop_server import serve_in_loop
from tests.support.quiet import until_calm
from tests.support.recording_sink import RecordingSink
from whatsray.admin.jobs_api import create_jobs_router
from whatsray.scheduling import JobSpec, SchedulerCore, UnknownJobError, default_system_jobs
from whatsray.scheduling.models import CronSpec

pytestmark = pytest.mark.integration

T = TypeVar("T")

EXAMPLES_PER_OPERATION = 12  # per round and mode (valid, invalid): ~530 requests in all
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Most requests carry the admin token; the others the Authorization header schemathesis made
# (none, malformed, or a random bearer token).
WITH_TOKEN = st.sampled_from([True] * 4 + [False])
USER = "15551234567"  # the document's own example recipient: its window is open


KNOWN_JOB = "fuzz-reminder"
# Besides ids the generator makes up (mostly unknown: 404), rounds on things that exist.
KNOWN_PATHS = {"job_id": KNOWN_JOB, "chat": f"{PNID}:{USER}"}


@dataclass
class Deployment:
    admin: Admin
    jobs: SchedulerCore
    url: str


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with admin_stack(tmp_path) as admin:
        jobs = SchedulerCore(
            admin.store,
            RecordingSink(),
            now=admin.clock.now,
            timers=False,
            system_jobs=default_system_jobs(),
        )
        await jobs.start()
        try:
            admin.app.include_router(create_jobs_router(admin_token=ADMIN_TOKEN, jobs=jobs))
            # Something to find: chats with messages (one is the document's example user).
            await admin.user_says(USER, "hello", profile_name="Ana Lima")
            await admin.user_says("15551230002", "hi", profile_name="Bruno")
            async with serve_in_loop(admin.app) as url:
                yield Deployment(admin, jobs, url)
        finally:
            await jobs.close()


async def _known_job(jobs: SchedulerCore) -> None:
    """The reminder `KNOWN_JOB` as first defined (a round before may have changed or deleted it)."""
    with contextlib.suppress(UnknownJobError):
        await jobs.delete_job(KNOWN_JOB)
    spec = JobSpec(
        id=KNOWN_JOB,
        name="Call mom",
        chat=f"{PNID}:{USER}",
        payload={"text": "call mom"},
        trigger=CronSpec(expression="0 9 * * 1-5"),
        timezone="Europe/Berlin",
    )
    await jobs.create_job(spec)


def _bearer_credentials(header: str | None) -> bool:
    """Whether the header carries bearer credentials (right or wrong), as `BearerAuth` reads it."""
    scheme, _, credentials = (header or "").strip().partition(" ")
    return scheme.lower() == "bearer" and bool(credentials.strip())


async def _state(admin: Admin) -> tuple[Any, ...]:
    """Everything a request could change, once the deployment has nothing left to do (as
    `Admin.quiet`, polled more often: this runs around every request)."""

    async def busy() -> int:
        return admin.outbox.in_flight() + admin.emulator.delivery.pending

    await until_calm(busy, lambda count: count == 0, poll_s=0.005)
    return (await store_digest(admin.store), len(admin.emulator.outbound()))


async def test_the_admin_and_jobs_apis_fuzzed_from_their_openapi(deployment: Deployment) -> None:
    admin, url = deployment.admin, deployment.url
    schema = await asyncio.to_thread(schemathesis.openapi.from_url, f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert {"POST /api/send-message", "POST /api/jobs", "PATCH /api/jobs/{job_id}"} <= labels
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()
    quiet_state = [await _state(admin)]  # as the last request left it, once quiet

    def on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    def fuzz(operation: Any, mode: GenerationMode, paths: dict[str, str] | None) -> None:
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(
            case=operation.as_strategy(generation_mode=mode, path_parameters=paths),
            with_token=WITH_TOKEN,
        )
        def one_request(case: schemathesis.Case, with_token: bool) -> None:
            assert case.meta is not None
            negative = {
                location
                for location, component in case.meta.components.items()
                if component.mode.is_negative
            }
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if with_token else None
            # With the token, a case whose only invalid part was its Authorization header is a
            # valid request; without it, the generated header (none, malformed, a random
            # bearer token) is what the API must refuse.
            negative_data = bool(negative - {ParameterLocation.HEADER}) if with_token else True
            before = quiet_state[0]
            response = case.call(base_url=url, headers=headers, timeout=30)
            quiet_state[0] = after = on_loop(_state(admin))
            statuses[response.status_code] += 1
            context = f"{case.operation.label} {mode.value}: {case.as_curl_command(headers)}"
            assert response.status_code < 500, (response.status_code, response.text, context)
            if not with_token:
                sent = response.request.headers.get("Authorization")
                expected = 403 if _bearer_credentials(sent) else 401
                assert response.status_code == expected, (sent, response.text, context)
            checks = CHECKS if negative_data else CHECKS[:-1]
            case.validate_response(response, checks=checks, headers=headers)
            if response.status_code >= 400:
                assert_refusal_names_the_problem(response.status_code, response.content, context)
                # Once quiet again, a refused request has left everything as it was.
                assert after == before, (f"{response.status_code} changed the state", context)

        one_request()

    rounds = [(operation, None) for operation in operations] + [
        (operation, {name: KNOWN_PATHS[name] for name in names})
        for operation in operations
        if (names := [p.name for p in operation.path_parameters]) and set(names) <= set(KNOWN_PATHS)
    ]
    failures: list[str] = []
    for operation, paths in rounds:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if paths and "job_id" in paths:
                await _known_job(deployment.jobs)
                quiet_state[0] = await _state(admin)
            try:
                await asyncio.to_thread(fuzz, operation, mode, paths)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"--- {operation.label} {paths or ''} ({mode.value}):\n{exc}")
    assert not failures, "\n".join(failures)
    # Both kinds of answer were seen: accepted requests, and every kind of refusal.
    assert {200, 401, 403, 404, 422} <= set(statuses), statuses
