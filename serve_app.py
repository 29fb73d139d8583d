"""The composition root: settings, actor names and options, and the Serve application.

`serve run serve_app:app` (or `serve run configs/local.yaml`) imports this module; the ingress
replica then calls `Platform.start()`, which creates every actor of the platform, or finds it when
it already runs (named, detached, `get_if_exists`). Ray restarts any of them that dies
(`max_restarts=-1`), and each rebuilds its state from the inbox and the store.

Releases: every actor's name carries the release (`store@3f2a9c1b7d0e`, whatsray/release.py), a
digest of the code, the settings and the files they load. A deploy that changes any of them
starts a new release, whose `Platform.start` first retires the old release's actors
(actors/rollout.py), then creates its own; a deploy that changes nothing finds its own.

Placement: by default Ray puts each actor where it likes (no CPU reserved, no resources asked).
`WHATSRAY_PLACEMENT` (JSON, read where the platform starts: the ingress replica's environment,
so set it before the Ray nodes start) asks for custom resources per actor kind, so that a
cluster can pin them: `{"store": {"head": 0.01}, "session_host": [{"w0": 0.01}, {"w1": 0.01}]}`.
Kinds: store, outbox, scheduler, router, agent_worker, session_host, local_services, ingress, and
`default` for every kind not named. A list spreads the actors of a kind: session host `p` (agent
worker `i`) takes entry `p % len` (`i % len`); every other kind takes the first entry. In cluster
mode the store goes to the head node unless the variable names it. Rules: whatsray/placement.py;
see docs/cluster.md and `benchmarks/multinode.py`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import serve

import whatsray
from actors.agents import AgentWorker, RouterActor, load_config
from actors.handles import PlatformHandles
from actors.ingress import Ingress
from actors.llm_deployment import build_llm_app
from actors.local_services import LocalServices
from actors.outbox import OutboxActor
from actors.rollout import find_in_release, retire_other_releases, rollout_lock
from actors.scheduler import SchedulerActor
from actors.session_host import SessionHost
from actors.store import StoreActor
from whatsray.number_settings import resolve_number_paths
from whatsray.observability.logs import LogSetup
from whatsray.placement import PLACEMENT_ENV, parse_placement, resources_for
from whatsray.release import code_digest, release_id, versioned
from whatsray.scheduling import JobSpec, load_jobs_file
from whatsray.settings import Settings, load_settings, resolve_local_secrets
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID, BusinessNumber, EmulatorConfig

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


def find_actor(name: str, release: str | None = None) -> Any:
    """The running platform's actor called `name` (one of the names above) in `release`, or in
    the one release running; tools and tests look actors up through this."""
    return find_in_release(name, NAMESPACE, release)


def current_release(settings: Settings) -> str:
    """The release these settings and the code on this machine make (whatsray/release.py)."""
    here = Path(__file__).resolve().parent
    package = Path(whatsray.__file__).resolve().parent
    return release_id(settings, code_digest([package, here / "actors", here / "serve_app.py"]))


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


# Ray packs actors that ask only for a (custom) resource onto one node: spread the kinds there
# are many of over the nodes that qualify, so that a lost node takes a share of the partitions,
# not all of them (docs/cluster.md, "Losing a node").
SPREAD_KINDS = frozenset({"session_host", "agent_worker", "outbox"})
_KINDS = {
    StoreActor: "store",
    OutboxActor: "outbox",
    SchedulerActor: "scheduler",
    RouterActor: "router",
    AgentWorker: "agent_worker",
    SessionHost: "session_host",
    LocalServices: "local_services",
}


def placement_resources(kind: str, index: int = 0, *, mode: str = "local") -> dict[str, float]:
    """The custom resources `WHATSRAY_PLACEMENT` asks for this actor kind; in cluster mode the
    store goes to the head node unless it names the store (rules: whatsray/placement.py)."""
    return resources_for(parse_placement(os.environ.get(PLACEMENT_ENV)), kind, index, mode=mode)


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
    release: str

    def _name(self, name: str) -> str:
        return versioned(name, self.release)

    def _actor(self, cls: type, name: str, *args: Any, **kwargs: Any) -> Any:
        options = dict(ACTOR_OPTIONS)
        kind = _KINDS.get(cls, "")
        suffix = name.rsplit("-", 1)[-1]
        index = int(suffix) if kind in ("session_host", "agent_worker") and suffix.isdigit() else 0
        if resources := placement_resources(kind, index, mode=self.settings.mode):
            options["resources"] = resources
        if kind in SPREAD_KINDS:
            options["scheduling_strategy"] = "SPREAD"
        # Every actor sets its logging up first thing, named as here (docs/logging.md).
        fields: dict[str, str | int] = {"actor": name}
        if kind == "session_host":
            fields["partition"] = index
        logs = LogSetup.from_settings(self.settings).for_process(**fields)
        # The local services (the embedded Valkey, the emulator) outlive releases.
        full_name = name if cls is LocalServices else self._name(name)
        return ray.remote(cls).options(name=full_name, **options).remote(*args, logs=logs, **kwargs)

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
                    # Each number on its own tier, as the outboxes pace it (docs/emulator.md).
                    phone_numbers=tuple(
                        BusinessNumber.parse(
                            pnid, throughput_mps=s.number_settings(pnid).throughput_mps
                        )
                        for pnid in self.phone_number_ids
                    ),
                    webhook_url=f"http://127.0.0.1:{s.http_port}/webhook",
                    throughput_mps=s.throughput_mps,
                ),
                redis_url,
            )
            urls = await services.urls.remote()
            redis_url = urls["redis"]
            graph_url = emulator_url = urls["emulator"]
        assert redis_url is not None, "settings validation requires a Redis URL on a cluster"
        async with rollout_lock(redis_url):
            await retire_other_releases(self.release, NAMESPACE)
            return await self._start_release(redis_url, emulator_url, graph_url, config_jobs, llm)

    async def _start_release(
        self,
        redis_url: str,
        emulator_url: str | None,
        graph_url: str,
        config_jobs: Sequence[JobSpec],
        llm: dict[str, Any],
    ) -> PlatformHandles:
        s = self.settings
        every = {"metrics_every_s": s.metrics_interval_s}  # how often actors set their gauges
        store = self._actor(StoreActor, STORE_NAME, str(s.data_dir / "whatsray.duckdb"), **every)
        # The store migrates its file as it opens: done before any other actor of this release
        # starts (and, with the old release retired, while nothing else has the file open).
        await store.ping.remote()
        outboxes = {
            pnid: self._actor(
                OutboxActor,
                outbox_name(pnid),
                pnid,
                store,
                access_token=_secret(s, "access_token"),
                graph_api_base_url=graph_url,
                graph_api_version=s.graph_api_version,
                # The number's own tier and templates (WHATSRAY_NUMBERS), else the global ones.
                throughput_mps=s.number_settings(pnid).throughput_mps,
                templates_file=s.number_settings(pnid).templates_path,
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
        host_names = [self._name(session_host_name(p)) for p in range(s.partitions)]
        hosts = [
            self._actor(
                SessionHost,
                session_host_name(p),
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
            release=self.release,
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
            "numbers": resolve_number_paths(settings.numbers),
        }
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    deployment = serve.deployment(
        name="ingress",
        ray_actor_options={"num_cpus": 0, "resources": placement_resources("ingress")},
        max_ongoing_requests=1000,
    )(serve.ingress()(Ingress))
    logs = LogSetup.from_settings(settings).for_process(actor="ingress")
    platform = Platform(settings, current_release(settings))
    return deployment.bind(platform.start, llm_deployments(settings), logs=logs)


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
