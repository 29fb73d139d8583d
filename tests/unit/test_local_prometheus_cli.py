"""`whatsray local --prometheus` without Ray: the config it writes, the messages when Prometheus
or a port is missing, and how it stops Prometheus. The whole run is in
tests/integration/test_local_mode.py."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.prometheus import RULES
from whatsray.cli import local_prometheus, main
from whatsray.cli.local_prometheus import (
    PrometheusUnavailable,
    find_prometheus,
    port_in_use,
    write_config,
)
from whatsray.observability.prometheus_config import RAY_PREFIX_RELABEL
from whatsray.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # where `whatsray local` runs: configs/ is relative
    for name in ("WHATSRAY_METRICS_PORT", "WHATSRAY_PROMETHEUS_PORT", "WHATSRAY_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(data_dir=tmp_path / "data", **overrides)


def test_the_config_scrapes_the_pinned_port_and_loads_the_rules(tmp_path: Path) -> None:
    path = write_config(settings(tmp_path, metrics_port=8123))
    assert path == (tmp_path / "data" / "prometheus" / "prometheus.yml").resolve()
    config = yaml.safe_load(path.read_text())
    (job,) = config["scrape_configs"]  # no service-discovery job: it may list another Ray
    assert job["static_configs"] == [{"targets": ["127.0.0.1:8123"]}]
    assert job["metric_relabel_configs"] == [RAY_PREFIX_RELABEL]
    assert config["rule_files"] == [str(RULES)]
    promtool = shutil.which("promtool")
    assert promtool, "scripts/test installs Debian's prometheus package"
    check = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 1 rule files found" in check.stdout


def test_without_the_binary_the_message_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrometheusUnavailable, match="apt-get install prometheus"):
        find_prometheus(settings(tmp_path))


def test_a_taken_prometheus_port_is_named(tmp_path: Path, taken_port: int) -> None:
    if shutil.which("prometheus") is None:
        pytest.fail("scripts/test installs Debian's prometheus package")
    with pytest.raises(PrometheusUnavailable, match=f"port {taken_port} is taken"):
        find_prometheus(settings(tmp_path, prometheus_port=taken_port))


def test_port_in_use_sees_a_listener(taken_port: int) -> None:
    assert port_in_use(taken_port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    assert not port_in_use(free)


def test_local_prometheus_without_the_binary_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    data = tmp_path / "data"
    assert main(["local", "--prometheus", "--data-dir", str(data)]) == 2
    assert "no `prometheus` binary on PATH" in capsys.readouterr().err
    assert not (data / "serve-local.yaml").exists()  # written just before `serve run` starts


def test_a_taken_metrics_port_starts_nothing(
    tmp_path: Path, taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["local", "--metrics-port", str(taken_port), "--data-dir", str(data)]) == 2
    assert "--metrics-port" in capsys.readouterr().err
    assert not (data / "serve-local.yaml").exists()


def test_stop_terminates_and_kills_one_that_ignores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    local_prometheus.stop(polite)
    assert polite.returncode == -15  # SIGTERM: Prometheus shuts down cleanly on it

    monkeypatch.setattr(local_prometheus, "STOP_TIMEOUT_S", 0.5)
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
    local_prometheus.stop(stubborn)
    assert stubborn.returncode == -9
    stubborn.stdout.close()
