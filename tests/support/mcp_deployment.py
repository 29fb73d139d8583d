"""What the MCP tests run `whatsray mcp` against: the admin REST API (`admin_stack`) and a
stand-in jobs API, served on loopback, and the environment a stdio or HTTP server gets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from mcp.client.stdio import get_default_environment

from tests.support.admin_stack import ADMIN_TOKEN, PNID, Admin, admin_stack
from tests.support.fake_jobs_api import FakeJobsApi
from tests.support.loop_server import serve_in_loop


@dataclass
class Deployment:
    admin: Admin
    jobs: FakeJobsApi
    url: str  # the REST API's base URL on loopback
    tmp_path: Path


@asynccontextmanager
async def mcp_deployment(
    tmp_path: Path, numbers: Sequence[str] = (PNID,)
) -> AsyncIterator[Deployment]:
    """`numbers`: the business numbers the deployment serves (the first is the default)."""
    async with admin_stack(tmp_path, numbers=numbers) as admin:
        jobs = FakeJobsApi(ADMIN_TOKEN)
        admin.app.include_router(jobs.router())
        async with serve_in_loop(admin.app) as url:
            yield Deployment(admin, jobs, url, tmp_path)


def server_env(deployment: Deployment, token: str = ADMIN_TOKEN) -> dict[str, str]:
    """Only what the SDK passes to a stdio server, plus the connection: nothing leaks in from
    the developer's shell, and the data directory is the test's own."""
    return {
        **get_default_environment(),
        "WHATSRAY_MCP_API_URL": deployment.url,
        "WHATSRAY_ADMIN_TOKEN": token,
        "WHATSRAY_DATA_DIR": str(deployment.tmp_path / "mcp-data"),
    }
