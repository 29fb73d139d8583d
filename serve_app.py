"""The composition root: settings, actor names and options, and the Serve application.

`serve run serve_app:app` (or `serve run configs/local.yaml`) imports this module; the ingress
replica then calls `Platform.start()`, which creates every actor of the platform, or finds it when
it already runs (named, detached, `get_if_exists`). Ray restarts any of them that dies
(`max_restarts=-1`), and each rebuilds its state from the inbox and the store.

Placement: by default Ray puts each actor where it likes (no CPU reserved, no resources asked).
`WHATSRAY_PLACEMENT` (JSON, read where the platform starts: the ingress replica's environment,
so set it before the Ray nodes start) asks for custom resources per actor kind, so that a
cluster can pin them: `{"store": {"head": 0.01}, "session_host": [{"w0": 0.01}, {"w1": 0.01}]}`.
Kinds: store, outbox, scheduler, router, agent_worker, session_host, local_services, ingress. A
list spreads the actors of a kind: session host `p` (agent worker `i`) takes entry `p % len`
(`i % len`); every other kind takes the first entry. See `benchmarks/multinode.py`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from actors.agents import AgentWorker, RouterActor, load_config
from actors.handles import PlatformHandles
from actors.ingress import Ingress
from actors.llm_deployment import build_llm_app
from actors.local_services import LocalServices
from actors.outbox import OutboxActor
from actors.scheduler import SchedulerActor
from actors.session_host import SessionHost
from actors.store import StoreActor
from whatsray.observability.logs import LogSetup
from whatsray.scheduling import load_jobs_file
from whatsray.settings import Settings, load_settings, resolve_local_secrets
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID, EmulatorConfig

NAMESPACE = "whatsray"

# The actors' names (in NAMESPACE): tests and tools find them by these.
LOCAL_SERVICES_NAME = "local-services"
STORE_NAME = "store"
SCHEDULER_NAME = "scheduler"
ROUTER_NAME = "router"


def outbox_name(phone_number_id: str) -> str:
    return f"outbox-{phone_number_id}"


def session_host_name(partition: int) -> str:
    return f"session-host-{partition}"


def agent_worker_name(agent: str, index: int) -> str:
    return f"agent-{agent}-{index}"


def find_actor(name: str) -> Any:
    """The running platform's actor called `name` (one of the names above); tools and tests
    look actors up through this, never by `ray.get_actor` on their own."""
    return ray.get_actor(name, namespace=NAMESPACE)


# I/O-bound actors: no CPU reserved (a 2-core node would otherwise fit two), many calls at once.
ACTOR_OPTIONS: dict[str, Any] = {
    "namespace": NAMESPACE,
    "lifetime": "detached",
    "get_if_exists": True,
    "max_restarts": -1,
    "max_task_retries": -1,  # at-least-once: every remote method is idempotent
    "num_cpus": 0,
    "max_concurrency": 1000,
}


PLACEMENT_ENV = "WHATSRAY_PLACEMENT"
_KINDS = {
    StoreActor: "store",
    OutboxActor: "outbox",
    SchedulerActor: "scheduler",
    RouterActor: "router",
    AgentWorker: "agent_worker",
    SessionHost: "session_host",
    LocalServices: "local_services",
}


def placement_resources(kind: str, index: int = 0) -> dict[str, float]:
    """The custom resources `WHATSRAY_PLACEMENT` asks for this actor kind (none when unset)."""
    wanted = json.loads(os.environ.get(PLACEMENT_ENV) or "{}").get(kind)
    if isinstance(wanted, list):
        wanted = wanted[index % len(wanted)] if wanted else None
    return {str(k): float(v) for k, v in (wanted or {}).items()}


def _secret(settings: Settings, name: str) -> str:
    value = getattr(settings, name)
    if value is None:
        raise ValueError(f"WHATSRAY_{name.upper()} is required")
    secret: str = value.get_secret_value()
    return secret


@dataclass(frozen=True)
class Platform:
    """Creates (or finds) the platform's actors. Picklable: it travels to the ingress replica."""

    settings: Settings

    def _actor(self, cls: type, name: str, *args: Any, **kwargs: Any) -> Any:
        options = dict(ACTOR_OPTIONS)
        kind = _KINDS.get(cls, "")
        suffix = name.rsplit("-", 1)[-1]
        index = int(suffix) if kind in ("session_host", "agent_worker") and suffix.isdigit() else 0
        if resources := placement_resources(kind, index):
            options["resources"] = resources
        # Every actor sets its logging up first thing, named as here (docs/logging.md).
        fields: dict[str, str | int] = {"actor": name}
        if kind == "session_host":
            fields["partition"] = index
        logs = LogSetup.from_settings(self.settings).for_process(**fields)
        return ray.remote(cls).options(name=name, **options).remote(*args, logs=logs, **kwargs)

    @property
    def phone_number_ids(self) -> list[str]:
        return self.settings.phone_number_ids or [DEFAULT_PHONE_NUMBER_ID]

    async def start(self, llm: Mapping[str, Any] | None = None) -> PlatformHandles:
        """`llm`: the handles of the app's vLLM deployments, by engine key (Serve resolves the
        bound deployments of `build_app` into handles before the ingress calls this)."""
        s = self.settings
        llm = dict(llm or {})
        # The jobs file is checked before any actor starts: a bad file stops the start whole.
        config_jobs = load_jobs_file(s.jobs_file, default_timezone=s.default_timezone)
        local = s.mode == "local"
        graph_url, redis_url, emulator_url = s.graph_api_base_url, s.redis_url, None
        if local:
            services = self._actor(
                LocalServices,
                LOCAL_SERVICES_NAME,
                str(s.data_dir),
                s.emulator_port,
                EmulatorConfig(
                    app_secret=_secret(s, "app_secret"),
                    access_token=_secret(s, "access_token"),
                    phone_numbers=tuple(self.phone_number_ids),
                    webhook_url=f"http://127.0.0.1:{s.http_port}/webhook",
                    throughput_mps=s.throughput_mps,
                ),
                redis_url,
            )
            urls = await services.urls.remote()
            redis_url = urls["redis"]
            graph_url = emulator_url = urls["emulator"]
        assert redis_url is not None, "settings validation requires a Redis URL on a cluster"
        every = {"metrics_every_s": s.metrics_interval_s}  # how often actors set their gauges
        store = self._actor(StoreActor, STORE_NAME, str(s.data_dir / "whatsray.duckdb"), **every)
        outboxes = {
            pnid: self._actor(
                OutboxActor,
                outbox_name(pnid),
                pnid,
                store,
                access_token=_secret(s, "access_token"),
                graph_api_base_url=graph_url,
                graph_api_version=s.graph_api_version,
                throughput_mps=s.throughput_mps,
                templates_file=str(s.templates_file) if s.templates_file else None,
                **every,
            )
            for pnid in self.phone_number_ids
        }
        # Reminders go to the chats' inbox partitions; system jobs use the store and outboxes.
        scheduler = self._actor(
            SchedulerActor,
            SCHEDULER_NAME,
            redis_url=redis_url,
            partitions=s.partitions,
            store=store,
            outboxes=outboxes,
            default_timezone=s.default_timezone,
            system_jobs=s.system_jobs,
            sweep_every_s=s.scheduler_sweep_s,
            config_jobs=config_jobs,
        )
        agents_file, override = str(s.agents_file), s.engine_override
        router = self._actor(RouterActor, ROUTER_NAME, agents_file, override, llm=llm)
        # Workers reach the store, the outboxes and the scheduler through their tools
        # (docs/tools.md); the default zone resolves the times of reminders.
        workers = {
            name: [
                self._actor(
                    AgentWorker,
                    agent_worker_name(name, i),
                    agents_file,
                    name,
                    override,
                    store=store,
                    outboxes=outboxes,
                    operator_number=s.operator_number,
                    llm=llm,
                    scheduler=scheduler,
                    default_timezone=s.default_timezone,
                    **every,
                )
                for i in range(s.agent_pool_size)
            ]
            for name in load_config(agents_file, override).names
        }
        host_names = [session_host_name(p) for p in range(s.partitions)]
        hosts = [
            self._actor(
                SessionHost,
                host_names[p],
                p,
                redis_url=redis_url,
                partitions=s.partitions,
                store=store,
                router=router,
                agent_workers=workers,
                outboxes=outboxes,
                agents_file=agents_file,
                engine_override=override,
                idle_timeout_s=s.session_idle_timeout_s,
                retry_deadline_s=s.retry_deadline_s,
                operator_number=s.operator_number,
                handoff_release_after_s=s.handoff_release_after_s,
                peer_names=host_names,  # a handoff change reaches the host holding the chat
                namespace=NAMESPACE,
                **every,
            )
            for p in range(s.partitions)
        ]
        return PlatformHandles(
            redis_url=redis_url,
            partitions=s.partitions,
            app_secret=_secret(s, "app_secret"),
            verify_token=_secret(s, "verify_token"),
            admin_token=_secret(s, "admin_token"),
            phone_number_ids=tuple(self.phone_number_ids),
            emulator_url=emulator_url,
            store=store,
            outboxes=outboxes,
            router=router,
            agent_workers=workers,
            session_hosts=tuple(hosts),
            scheduler=scheduler,
            llm=llm,
        )


def build_app(settings: Settings | None = None) -> Any:
    settings = resolve_local_secrets(settings or load_settings())
    # Actors may start in another working directory: hand them absolute paths.
    settings = settings.model_copy(
        update={
            "data_dir": settings.data_dir.resolve(),
            "agents_file": settings.agents_file.resolve(),
            "jobs_file": settings.jobs_file.resolve() if settings.jobs_file else None,
            "templates_file": (
                settings.templates_file.resolve() if settings.templates_file else None
            ),
        }
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    deployment = serve.deployment(
        name="ingress",
        ray_actor_options={"num_cpus": 0, "resources": placement_resources("ingress")},
        max_ongoing_requests=1000,
    )(serve.ingress()(Ingress))
    logs = LogSetup.from_settings(settings).for_process(actor="ingress")
    return deployment.bind(Platform(settings).start, llm_deployments(settings), logs=logs)


def llm_deployments(settings: Settings) -> dict[str, Any]:
    """One vLLM deployment per `engine: vllm` entry that the agents use, bound into this app:
    agents reach it through its handle, anything else through the ingress's `/llm/<key>/v1`."""
    config = load_config(str(settings.agents_file), settings.engine_override)
    return {
        key: build_llm_app(
            spec.as_dict(),
            name=f"llm-{key}",
            http=False,
            logs=LogSetup.from_settings(settings).for_process(actor=f"llm-{key}"),
        )
        for key, spec in config.engines_in_use().items()
        if spec.engine == "vllm"
    }


app = build_app()
