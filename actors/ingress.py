"""The ingress deployment: Meta's webhook, health and readiness, and the admin API.

The POST path makes no actor call: verify the signature on the raw bytes, parse, dedupe + append to
the inbox, answer. 200 only after the inbox acknowledged the append; 503 when it could not.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute

from actors.clients import (
    AdminOutboxClient,
    AdminStoreClient,
    AgentPool,
    JobsClient,
    ProbeClient,
    SchedulerStatusClient,
    SessionHostClient,
)
from actors.handles import PlatformHandles
from actors.llm_client import HandleBackend
from actors.metrics import start_actor_metrics
from whatsray.admin import create_admin_router
from whatsray.admin.auth import BearerAuth
from whatsray.admin.jobs_api import create_jobs_router
from whatsray.admin.status import StatusSources, collect_status
from whatsray.admin.status_models import StatusOut
from whatsray.calls import calls
from whatsray.inbox import Inbox, partition_for
from whatsray.inbox.persistence import warn_unless_persistent
from whatsray.llm.openai_server import openai_router
from whatsray.observability.logs import LogSetup, configure_logging
from whatsray.pipeline.ingest import InboxSink
from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.webhook_receiver import webhook_routes

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0


class Ingress:
    async def __init__(  # type: ignore[misc]  # Serve awaits async constructors
        self,
        start: Callable[[Mapping[str, Any]], Awaitable[PlatformHandles]],
        llm: Mapping[str, Any] | None = None,
        logs: LogSetup | None = None,
    ) -> None:
        start_actor_metrics("ingress")
        configure_logging(logs)  # first: what the constructor logs is formatted and redacted
        # `start` (from the composition root) creates or finds every actor of the platform;
        # `llm` holds the handles of the app's vLLM deployments, by engine key.
        self.platform = platform = await start(llm or {})
        self._llm_backends = {
            key: HandleBackend(handle, await handle.models.remote())
            for key, handle in (llm or {}).items()
        }
        self._inbox = Inbox.from_url(platform.redis_url, partitions=platform.partitions)
        # One WARNING when Redis would lose acknowledged appends on a restart (AOF off).
        await warn_unless_persistent(self._inbox.persistence, READY_TIMEOUT_S)
        self._hosts = [SessionHostClient(h) for h in platform.session_hosts]
        self._agents = AgentPool(platform.agent_workers)
        self._status_sources = self._status_parts()
        self._probes = {
            "store": ProbeClient(platform.store, "store"),
            "scheduler": ProbeClient(platform.scheduler, "scheduler"),
            **{
                f"session_host_{p}": ProbeClient(h, "session_host")
                for p, h in enumerate(platform.session_hosts)
            },
        }

    def __serve_build_asgi_app__(self) -> FastAPI:
        platform = self.platform
        routes: list[BaseRoute] = [
            *webhook_routes(
                app_secret=platform.app_secret,
                verify_token=platform.verify_token,
                on_events=InboxSink(self._inbox),
            )
        ]
        app = FastAPI(title="whatsray", routes=routes)
        outboxes = {pnid: AdminOutboxClient(h) for pnid, h in platform.outboxes.items()}
        app.include_router(
            create_admin_router(
                admin_token=platform.admin_token,
                store=AdminStoreClient(platform.store),
                outbox_for=outboxes.__getitem__,
                phone_number_ids=platform.phone_number_ids,
                inference=self.inference_report,
                handoff=self.set_handoff,
                status=self.status_report,
                inbox=self._inbox,  # the inbound account and quarantine replays
            )
        )

        app.include_router(
            create_jobs_router(
                admin_token=platform.admin_token,
                jobs=JobsClient(platform.scheduler),
            )
        )

        # The vLLM deployments' OpenAI API, for anything else than the agents (admin token).
        auth = BearerAuth(platform.admin_token)

        async def admin_only(authorization: str | None = Header(None)) -> None:
            failure = auth.check(authorization)
            if failure is not None:
                raise HTTPException(failure.status, failure.message, headers=failure.headers)

        for key, backend in self._llm_backends.items():
            app.include_router(
                openai_router(backend), prefix=f"/llm/{key}", dependencies=[Depends(admin_only)]
            )

        @app.get("/health", summary="Liveness: the ingress answers")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/ready", summary="Readiness: inbox, store and session hosts reachable")
        async def ready() -> JSONResponse:
            checks = await self.readiness()
            body: dict[str, Any] = {"ready": all(checks.values()), "checks": checks}
            body["release"] = platform.release  # whose actors answer (docs/cluster.md)
            if platform.emulator_url:
                body["emulator_url"] = platform.emulator_url
            return JSONResponse(body, status_code=200 if body["ready"] else 503)

        return app

    async def set_handoff(self, chat: str, on: bool) -> None:
        """Through the SessionHost that owns the chat, so its live session sees the flag."""
        partition = partition_for(ChatKey.parse(chat), self.platform.partitions)
        await self._hosts[partition].set_handoff(chat, on)

    async def inference_report(self) -> dict[str, Any]:
        """Each agent's inference load over its workers, and the host's "one moment" counts."""
        agents = self.platform.agent_workers
        loads = await asyncio.gather(*(self._agents.load(name) for name in agents))
        hosts = await asyncio.gather(*(h.stats() for h in self._hosts))
        return {
            "agents": [load.as_dict() for load in loads],
            "notices_sent": sum(h.get("notices_sent", 0) for h in hosts),
            "typing_refreshes": sum(h.get("typing_refreshes", 0) for h in hosts),
        }

    def _status_parts(self) -> StatusSources:
        """`GET /api/status`'s parts: one call per actor (the inbox's backlog is Redis's)."""
        platform = self.platform
        return StatusSources(
            partitions=platform.partitions,
            backlog=self._inbox.backlog,
            sessions={p: host.status for p, host in enumerate(self._hosts)},
            agents={
                name: functools.partial(self._agents.load, name) for name in platform.agent_workers
            },
            outboxes={pnid: AdminOutboxClient(h).status for pnid, h in platform.outboxes.items()},
            store=AdminStoreClient(platform.store).status_counts,
            next_runs=SchedulerStatusClient(platform.scheduler).next_runs,
            persistence=self._inbox.persistence,
        )

    async def status_report(self) -> StatusOut:
        """One snapshot of the platform; a part that does not answer in time is unavailable."""
        return await collect_status(self._status_sources)

    async def call_counts(self) -> dict[str, int]:
        """The calls this replica made (through a deployment handle: `call_counts.remote()`)."""
        return calls.snapshot()

    async def readiness(self) -> dict[str, bool]:
        names = ["inbox", *self._probes]
        probes = [self._inbox.ping(), *(probe.ping() for probe in self._probes.values())]
        results = await asyncio.gather(
            *(asyncio.wait_for(p, READY_TIMEOUT_S) for p in probes),
            return_exceptions=True,
        )
        return {name: result is True for name, result in zip(names, results, strict=True)}
