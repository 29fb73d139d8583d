"""whatsray's metrics: one instrument per entry of the catalog (`catalog.py`, docs/metrics.md).

    from whatsray import metrics
    metrics.turns.inc(agent="faq", outcome="ok")

Each process binds the instruments once (`metrics.use(backend)`): Ray's metrics in actors,
prometheus-client elsewhere (the default). See `port.py`.
"""

from __future__ import annotations

from whatsray.metrics.catalog import CATALOG, MetricSpec, send_error_code
from whatsray.metrics.port import (
    Counter,
    Gauge,
    Histogram,
    MetricsBackend,
    current_backend,
    use,
)

__all__ = [
    "CATALOG",
    "Counter",
    "Gauge",
    "Histogram",
    "MetricSpec",
    "MetricsBackend",
    "current_backend",
    "send_error_code",
    "use",
]


def _counter(name: str) -> Counter:
    return Counter(CATALOG[name])


def _gauge(name: str) -> Gauge:
    return Gauge(CATALOG[name])


def _histogram(name: str) -> Histogram:
    return Histogram(CATALOG[name])


webhook_requests = _counter("whatsray_webhook_requests_total")
webhook_seconds = _histogram("whatsray_webhook_seconds")
inbox_lag_entries = _gauge("whatsray_inbox_lag_entries")
inbox_pending_entries = _gauge("whatsray_inbox_pending_entries")
inbox_oldest_pending_seconds = _gauge("whatsray_inbox_oldest_pending_seconds")
inbound_unresolved = _gauge("whatsray_inbound_unresolved")
inbound_unresolved_oldest_seconds = _gauge("whatsray_inbound_unresolved_oldest_seconds")
quarantined = _counter("whatsray_quarantined_total")
sessions_active = _gauge("whatsray_sessions_active")
turns = _counter("whatsray_turns_total")
turn_seconds = _histogram("whatsray_turn_seconds")
turn_stage_seconds = _histogram("whatsray_turn_stage_seconds")
routes = _counter("whatsray_routes_total")
llm_requests = _counter("whatsray_llm_requests_total")
llm_seconds = _histogram("whatsray_llm_seconds")
llm_first_token_seconds = _histogram("whatsray_llm_first_token_seconds")
llm_tokens = _counter("whatsray_llm_tokens_total")
agent_slots_in_use = _gauge("whatsray_agent_slots_in_use")
agent_turns_waiting = _gauge("whatsray_agent_turns_waiting")
outbox_sends = _counter("whatsray_outbox_sends_total")
outbox_events = _counter("whatsray_outbox_events_total")
outbox_queue_depth = _gauge("whatsray_outbox_queue_depth")
outbox_oldest_pending_seconds = _gauge("whatsray_outbox_oldest_pending_seconds")
rate_limit_wait_seconds = _histogram("whatsray_rate_limit_wait_seconds")
template_fallbacks = _counter("whatsray_template_fallbacks_total")
statuses = _counter("whatsray_statuses_total")
dead_letters = _counter("whatsray_dead_letters_total")
handoffs_active = _gauge("whatsray_handoffs_active")
scheduler_runs = _counter("whatsray_scheduler_runs_total")
scheduler_lag_seconds = _histogram("whatsray_scheduler_lag_seconds")
store_calls = _counter("whatsray_store_calls_total")
store_batch_rows = _histogram("whatsray_store_batch_rows")
actor_restarts = _counter("whatsray_actor_restarts_total")
actor_calls = _counter("whatsray_actor_calls_total")
