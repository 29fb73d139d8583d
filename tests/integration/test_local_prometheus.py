"""`whatsray local --prometheus` for real: Ray's metrics on the pinned port, a Prometheus that
scrapes it and loads the alert rules, whatsray's metrics under their plain names, and Ctrl-C
stopping Prometheus with everything else (docs/metrics.md, "Locally")."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.integration.test_local_mode import SHUTDOWN_S, reply_to, whatsray_local
from tests.support.prometheus import Prometheus, alert_rules
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


def banner(output: IO[str] | None) -> str:
    """The rest of the banner `whatsray_local` stopped in, up to its last line."""
    assert output is not None
    lines = []
    for line in output:
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            return "".join(lines)
    raise AssertionError(f"the banner ended early: {''.join(lines)}")


def test_prometheus_scrapes_the_pinned_port_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "data"
    http_port, emulator_port, metrics_port, prometheus_port = (free_port() for _ in range(4))
    url = f"http://127.0.0.1:{prometheus_port}"
    extra = ("--metrics-port", str(metrics_port), "--prometheus")
    with whatsray_local(
        data, http_port, emulator_port, *extra, "--prometheus-port", str(prometheus_port)
    ) as process:
        printed = banner(process.stdout)
        assert f"metrics     http://127.0.0.1:{metrics_port}/metrics" in printed
        assert f"prometheus  {url}" in printed
        emulator = f"http://127.0.0.1:{emulator_port}"
        assert reply_to(emulator, "hello metrics") == "echo: hello metrics"

        prom = Prometheus(url, httpx.Client(timeout=10))
        (target,) = prom.targets()
        assert target["labels"]["instance"] == f"127.0.0.1:{metrics_port}"
        prom.wait_until('up{job="whatsray"}', lambda r: bool(r) and r[0]["value"][1] == "1")
        # The port is Ray's (its own metrics), and whatsray's arrive without Ray's prefix.
        prom.wait_until('count({__name__=~"ray_node_.+"})', bool, timeout=60)
        prom.wait_until("sum(whatsray_turns_total)", bool, timeout=60)
        assert prom.query('{__name__=~"ray_whatsray_.+"}') == []
        loaded = prom.evaluated_rules()
        assert sorted(r["name"] for r in loaded) == sorted(r["alert"] for r in alert_rules())
        assert {r["name"]: r.get("lastError") for r in loaded if r["health"] != "ok"} == {}

        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=SHUTDOWN_S) == 0
    # `whatsray local` waits for its Prometheus before it exits: nothing listens any more.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/-/ready", timeout=5)
    assert (data / "prometheus" / "data").is_dir()
