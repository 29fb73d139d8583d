"""Every Grafana panel query and every alert expression, run through a real Prometheus that
scrapes a process recording every metric of the catalog through `whatsray.metrics`.

Without Ray: prometheus-client exports the names as the relabelled Ray export does. Every panel
must return data (a typo in a metric or label name returns nothing), every alert expression must
be valid, and every rule must load and evaluate without error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tests.support.prometheus import (
    RULES,
    Prometheus,
    PrometheusError,
    alert_expressions,
    alert_rules,
    dashboard_queries,
    running_prometheus,
)
from tests.support.servers import free_port
from whatsray import metrics
from whatsray.metrics.prometheus import PrometheusBackend
from whatsray.observability.prometheus_config import prometheus_config

pytestmark = pytest.mark.integration

# A plausible value for each label; the dashboard's selectors pick some of them out.
LABEL_VALUES = {
    "result": "accepted",
    "partition": "0",
    "agent": "faq",
    "outcome": "ok",
    "stage": "llm",
    "engine": "scripted",
    "direction": "prompt",
    "phone_number_id": "106540352242922",
    "error_code": "130429",
    "event": "submitted",
    "limiter": "throughput",
    "purpose": "reminder",
    "reason": "window_closed",
    "status": "delivered",
    "kind": "reminder",
    "op": "commit_turns",
    "actor": "session_host",
    "target": "store",
    "method": "commit_turns",
    "fallback_cause": "",
}
EXTRA = {"event": "ambiguous_resend"}  # the rare-events panel selects the others


def record_everything() -> None:
    """One sample of every instrument of the catalog, through the port the platform uses."""
    for instrument in vars(metrics).values():
        if not isinstance(instrument, metrics.Counter | metrics.Gauge | metrics.Histogram):
            continue
        spec = instrument.spec
        for values in (LABEL_VALUES, {**LABEL_VALUES, **EXTRA}):
            labels = {name: values[name] for name in spec.labels}
            if isinstance(instrument, metrics.Counter):
                instrument.inc(**labels)
            elif isinstance(instrument, metrics.Gauge):
                instrument.set(3, **labels)
            else:
                instrument.observe(0.2, **labels)


class RayNamed(Collector):
    """A series as Ray's exporter names it: `ray_` in front, Ray's labels."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "ray_whatsray_handoffs_active", "Chats handed to a person.", labels=["WorkerId"]
        )
        family.add_metric(["worker-1"], 2)
        yield family


@pytest.fixture(scope="module")
def recording() -> Iterator[str]:
    """A prometheus-client endpoint whose metrics keep moving (rates need two samples)."""
    previous = metrics.current_backend()
    registry = CollectorRegistry()
    metrics.use(PrometheusBackend(registry))
    registry.register(RayNamed())
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.2):
            record_everything()

    record_everything()
    feeder = threading.Thread(target=feed, name="metrics-feeder", daemon=True)
    feeder.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        feeder.join(timeout=5)
        server.shutdown()
        thread.join(timeout=5)
        metrics.use(previous)


@pytest.fixture(scope="module")
def prometheus(recording: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    config = prometheus_config(
        ray_service_discovery=None, static_targets=[recording], rule_files=[RULES]
    )
    with running_prometheus(config, tmp_path_factory.mktemp("prometheus")) as prom:
        # Rates need two scrapes in their window; three to be safe.
        prom.wait_until(
            "count_over_time(up[1m])", lambda r: bool(r) and float(r[0]["value"][1]) >= 3
        )
        yield prom


def test_the_catalog_is_every_instrument_recorded() -> None:
    recorded = {
        instrument.spec.name
        for instrument in vars(metrics).values()
        if isinstance(instrument, metrics.Counter | metrics.Gauge | metrics.Histogram)
    }
    assert recorded == set(metrics.CATALOG)


@pytest.mark.parametrize("query", dashboard_queries())
def test_the_panel_query_returns_data(prometheus: Prometheus, query: str) -> None:
    prometheus.wait_until(query, bool, timeout=15)


@pytest.mark.parametrize("expr", alert_expressions())
def test_the_alert_expression_is_valid(prometheus: Prometheus, expr: str) -> None:
    prometheus.query(expr)


def test_every_rule_loads_and_evaluates_without_error(prometheus: Prometheus) -> None:
    loaded = prometheus.evaluated_rules()
    assert sorted(rule["name"] for rule in loaded) == sorted(r["alert"] for r in alert_rules())
    assert {r["name"]: r.get("lastError") for r in loaded if r["health"] != "ok"} == {}


def test_a_bad_query_raises_with_prometheus_s_message(prometheus: Prometheus) -> None:
    with pytest.raises(PrometheusError, match="parse error"):
        prometheus.query("sum by (le (rate(whatsray_webhook_seconds_bucket[1m]))")


def test_the_relabel_rule_takes_ray_s_prefix_off(prometheus: Prometheus) -> None:
    (target,) = prometheus.targets()
    assert target["health"] == "up", target.get("lastError")
    (series,) = prometheus.query('whatsray_handoffs_active{WorkerId="worker-1"}')
    assert series["value"][1] == "2"
    assert prometheus.query('{__name__=~"ray_whatsray_.+"}') == []
