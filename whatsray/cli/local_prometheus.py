"""The Prometheus of `whatsray local --prometheus`: config and storage in `<data>/prometheus/`,
scraping the pinned Ray metrics port and evaluating whatsray's alert rules (docs/metrics.md)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from whatsray.observability.prometheus_config import RULES_FILE, prometheus_config, render
from whatsray.settings import Settings

RULES = Path("configs/prometheus") / RULES_FILE
SCRAPE_INTERVAL = "5s"  # a laptop: new numbers within seconds matter more than the load
STOP_TIMEOUT_S = 30.0


class PrometheusUnavailable(RuntimeError):
    """No `prometheus` binary, or its port is taken: the message says what to do."""


def port_in_use(port: int) -> bool:
    """Would a server fail to listen on `port`? (Ray's exporter, like this check, reuses
    addresses: connections of a previous run in TIME_WAIT do not count.)"""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return True
        return False


def find_prometheus(settings: Settings) -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusUnavailable(
            "whatsray local --prometheus: no `prometheus` binary on PATH. Install it "
            "(Debian/Ubuntu: `sudo apt-get install prometheus`; elsewhere "
            "https://prometheus.io/download/), or leave --prometheus out and scrape "
            f"http://127.0.0.1:{settings.metrics_port}/metrics yourself."
        )
    if port_in_use(settings.prometheus_port):
        raise PrometheusUnavailable(
            f"whatsray local --prometheus: port {settings.prometheus_port} is taken; "
            "pick another with --prometheus-port."
        )
    return binary


def write_config(settings: Settings) -> Path:
    """`<data>/prometheus/prometheus.yml`: Ray's one local metrics port, our rules."""
    home = settings.data_dir.resolve() / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    rules = [RULES.resolve()] if RULES.is_file() else []
    config = prometheus_config(
        scrape_interval=SCRAPE_INTERVAL,
        # The pinned port is this Ray's; the shared service-discovery file in /tmp/ray may
        # list another Ray's (a test's), and both would count every sample twice.
        ray_service_discovery=None,
        static_targets=[f"127.0.0.1:{settings.metrics_port}"],
        rule_files=rules,
    )
    path = home / "prometheus.yml"
    path.write_text(render(config))
    return path


def start_prometheus(binary: str, settings: Settings) -> subprocess.Popen[bytes]:
    config = write_config(settings)
    home = config.parent
    with (home / "prometheus.log").open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(  # noqa: S603  # the prometheus on PATH, our own arguments
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{settings.prometheus_port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches `whatsray local`, which stops it
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (Prometheus flushes its head block and exits), SIGKILL if it hangs."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
