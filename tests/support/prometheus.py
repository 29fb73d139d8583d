"""A real Prometheus for tests (Debian's `prometheus` binary) and the queries to run through it.

    with running_prometheus(config, tmp_path) as prom:
        prom.wait_until('up{job="whatsray"}', lambda r: r and r[0]["value"][1] == "1")
        for expr in dashboard_queries(DASHBOARD) + alert_expressions(RULES):
            prom.query(expr)  # raises PrometheusError with Prometheus's message when invalid

`config` is a prometheus.yml as a dict (`whatsray.observability.prometheus_config.
prometheus_config`); its scrape and evaluation intervals become 1 s. Give `rule_files` as
absolute paths: Prometheus resolves relative ones against the config's directory.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.servers import free_port
from whatsray.metrics import CATALOG

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "configs" / "grafana" / "whatsray.json"
RULES = ROOT / "configs" / "prometheus" / "whatsray-rules.yml"

# Grafana's built-in variables, as fixed values a plain Prometheus query can take.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_METRIC = re.compile(r"\bwhatsray_[a-z][a-z_]*[a-z]\b")
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")

Result = list[dict[str, Any]]


class PrometheusError(RuntimeError):
    """Prometheus refused a query (its errorType and error in the message), or did not start."""


@dataclass(frozen=True)
class Prometheus:
    url: str
    http: httpx.Client

    def query(self, expr: str) -> Result:
        """An instant query's result (a list of series; a scalar or string as one item)."""
        response = self.http.get(f"{self.url}/api/v1/query", params={"query": expr})
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: Result = data["result"]
        return result

    def wait_until(
        self, expr: str, predicate: Callable[[Result], bool], timeout: float = 30.0
    ) -> Result:
        """Query `expr` until `predicate(result)` holds; AssertionError with the last result."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr!r} after {timeout} s: {result}")
            time.sleep(0.25)

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule (name, query, health, lastError, state...), all groups together."""
        body = self.http.get(f"{self.url}/api/v1/rules").json()
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    def evaluated_rules(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """`rules()` once each has been evaluated (health `ok` or `err`, no longer `unknown`)."""
        deadline = time.monotonic() + timeout
        while True:
            rules = self.rules()
            if rules and all(rule["health"] != "unknown" for rule in rules):
                return rules
            if time.monotonic() > deadline:
                raise AssertionError(f"rules not evaluated after {timeout} s: {rules}")
            time.sleep(0.25)

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (labels, health, lastError)."""
        body = self.http.get(f"{self.url}/api/v1/targets", params={"state": "active"}).json()
        targets: list[dict[str, Any]] = body["data"]["activeTargets"]
        return targets


@contextmanager
def running_prometheus(
    config: Mapping[str, Any], directory: Path, *, ready_within_s: float = 30.0
) -> Iterator[Prometheus]:
    """Prometheus with `config` (1 s intervals) on a free loopback port, storage in
    `directory`, ready (`/-/ready`) on entry and stopped on the way out."""
    binary = shutil.which("prometheus")
    if binary is None:  # scripts/test installs it: a missing one is a broken setup, not a skip
        raise PrometheusError("no `prometheus` binary on PATH (apt-get install prometheus)")
    directory.mkdir(parents=True, exist_ok=True)
    config = {**config, "global": {"scrape_interval": "1s", "evaluation_interval": "1s"}}
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log_path = directory / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(timeout=10)
    try:
        _wait_ready(url, http, process, log_path, ready_within_s)
        yield Prometheus(url, http)
    finally:
        http.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(
    url: str, http: httpx.Client, process: subprocess.Popen[bytes], log: Path, within_s: float
) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if http.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:]
    raise PrometheusError(f"prometheus at {url} not ready (exit code {process.poll()}):\n{tail}")


def substitute_grafana_variables(expr: str) -> str:
    """`expr` with Grafana's built-in variables as fixed values; an unknown variable is an
    error (a query that only Grafana could run)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GRAFANA_VARIABLES:
            raise ValueError(f"unknown Grafana variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return _VARIABLE.sub(value, expr)


def dashboard_panels(path: Path = DASHBOARD) -> list[dict[str, Any]]:
    """Every panel that is not a row, those inside collapsed rows included."""
    found: list[dict[str, Any]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            if panel.get("type") == "row":
                walk(panel.get("panels", []))
            else:
                found.append(panel)

    walk(json.loads(path.read_text())["panels"])
    return found


def dashboard_queries(path: Path = DASHBOARD) -> list[str]:
    """Every panel target's PromQL, Grafana's variables replaced, ready for `query`."""
    return [
        substitute_grafana_variables(target["expr"])
        for panel in dashboard_panels(path)
        for target in panel.get("targets", [])
    ]


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    """Every rule of a Prometheus rules file (alerting and recording), all groups together."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_expressions(path: Path = RULES) -> list[str]:
    """Every rule's expression, ready for `query`."""
    return [str(rule["expr"]).strip() for rule in alert_rules(path)]


def metric_names(text: str) -> set[str]:
    """The metrics `text` (a query, a page) names: its `whatsray_*` words, with a catalog
    histogram's `_bucket`, `_sum` or `_count` taken off. Compare with the catalog's keys."""
    names = set()
    for name in _METRIC.findall(text):
        for suffix in _HISTOGRAM_SERIES:
            base = name.removesuffix(suffix)
            if base != name and base in CATALOG and CATALOG[base].kind == "histogram":
                name = base
        names.add(name)
    return names
