"""The metrics port: instruments check their labels, bind to a backend, and export the catalog's
names through prometheus-client."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.support.metrics import MetricsProbe
from whatsray import metrics
from whatsray.metrics import CATALOG, send_error_code
from whatsray.metrics.catalog import MetricSpec
from whatsray.metrics.prometheus import PrometheusBackend

# Labels that would put a user (or one message) into a series name: never allowed.
UNBOUNDED = {"chat", "chat_key", "user", "wamid", "phone", "from", "to", "bsuid", "message_id"}


def test_every_catalog_entry_has_an_instrument_and_a_valid_name() -> None:
    instruments = {
        value.spec.name
        for value in vars(metrics).values()
        if isinstance(value, metrics.Counter | metrics.Gauge | metrics.Histogram)
    }
    assert instruments == set(CATALOG)
    for spec in CATALOG.values():
        assert re.fullmatch(r"whatsray_[a-z_]+", spec.name), spec.name
        assert not UNBOUNDED & set(spec.labels), spec.name


def test_a_spec_checks_its_shape() -> None:
    with pytest.raises(ValueError, match="_total"):
        MetricSpec("whatsray_things", "counter", "no suffix")
    with pytest.raises(ValueError, match="buckets"):
        MetricSpec("whatsray_seconds", "histogram", "no buckets")


def test_wrong_labels_are_refused_and_record_nothing(recorded: MetricsProbe) -> None:
    with pytest.raises(ValueError, match=r"takes labels \['agent', 'outcome'\]"):
        metrics.turns.inc(agent="faq")
    with pytest.raises(ValueError, match="takes labels"):
        metrics.turns.inc(agent="faq", outcome="ok", chat="49151:123")
    with pytest.raises(ValueError, match="only goes up"):
        metrics.turns.inc(-1, agent="faq", outcome="ok")
    assert recorded.value("whatsray_turns_total") == 0


def test_records_reach_the_bound_registry_under_the_catalog_names(recorded: MetricsProbe) -> None:
    metrics.turns.inc(agent="faq", outcome="ok")
    metrics.turns.inc(2, agent="faq", outcome="ok")
    metrics.turns.inc(0, agent="faq", outcome="failed")  # nothing to count
    metrics.sessions_active.set(7, partition=1)
    metrics.webhook_seconds.observe(0.2)

    assert recorded.value("whatsray_turns_total", agent="faq", outcome="ok") == 3
    assert recorded.value("whatsray_turns_total", outcome="failed") == 0
    assert recorded.value("whatsray_sessions_active", partition="1") == 7
    assert recorded.value("whatsray_webhook_seconds_count") == 1
    assert recorded.value("whatsray_webhook_seconds_bucket", le="0.25") == 1
    assert recorded.value("whatsray_webhook_seconds_bucket", le="0.1") == 0


def test_binding_again_moves_every_instrument() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    metrics.use(PrometheusBackend(first))
    metrics.statuses.inc(status="read")
    metrics.use(PrometheusBackend(second))
    metrics.statuses.inc(status="read")
    metrics.statuses.inc(status="read")

    assert b'whatsray_statuses_total{status="read"} 1.0' in generate_latest(first)
    assert b'whatsray_statuses_total{status="read"} 2.0' in generate_latest(second)


@pytest.mark.parametrize(
    ("code", "label"),
    [(None, ""), (130429, "130429"), (131047, "131047"), (190, "190"), (131009, "other")],
)
def test_meta_error_codes_are_a_closed_set_of_labels(code: int | None, label: str) -> None:
    assert send_error_code(code) == label
