"""Every metric whatsray exports: names, types, labels and meaning, in one place.

These names are a public contract: the Grafana dashboard (`configs/grafana/`), the alert rules
(`configs/prometheus/`) and people's own queries depend on them, and `docs/metrics.md` documents
each one (a test checks that the page and this catalog agree). Ray's exporter may put `ray_` in
front of a name; both forms are the same metric.

Labels are bounded: a closed set of values, or one value per partition, agent, business number or
actor kind. Never a user's number, a BSUID, a chat key or a message id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CATALOG", "SEND_ERROR_CODES", "MetricSpec", "send_error_code"]

Kind = Literal["counter", "gauge", "histogram"]

# Latency buckets in seconds: fine below a second (Meta's webhook bar is 250 ms at p50), coarse
# up to a minute (a slow LLM turn).
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Waits and lags that can reach minutes (rate limits, a scheduler catching up).
LONG_SECONDS = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0)
ROWS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

# Meta error codes that get a label value of their own on outbox sends; any other is "other".
SEND_ERROR_CODES = frozenset({130429, 131056, 131047, 131026, 131048, 131000, 190})


def send_error_code(code: int | None) -> str:
    """The `error_code` label of a send: "" for none, one of SEND_ERROR_CODES, or "other"."""
    if code is None:
        return ""
    return str(code) if code in SEND_ERROR_CODES else "other"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # histograms only

    def __post_init__(self) -> None:
        if (self.kind == "histogram") != bool(self.buckets):
            raise ValueError(f"{self.name}: buckets go with histograms, and only with them")
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"{self.name}: a counter's name ends in _total")


def _spec(
    name: str, kind: Kind, help: str, *labels: str, buckets: tuple[float, ...] = ()
) -> MetricSpec:
    return MetricSpec(name, kind, help, labels, buckets)


CATALOG: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        # The webhook (ingress).
        _spec(
            "whatsray_webhook_requests_total",
            "counter",
            "Webhook POSTs by result: accepted, duplicate (every event seen before), "
            "bad_signature, malformed, too_large, unavailable (inbox down: 503, Meta retries).",
            "result",
        ),
        _spec(
            "whatsray_webhook_seconds",
            "histogram",
            "Time to answer a webhook POST (Meta's bar: p50 under 250 ms, under 1 % over 1 s).",
            buckets=SECONDS,
        ),
        # The inbox, per partition (set by each SessionHost).
        _spec(
            "whatsray_inbox_lag_entries",
            "gauge",
            "Entries of the partition's stream not yet read by its SessionHost.",
            "partition",
        ),
        _spec(
            "whatsray_inbox_pending_entries",
            "gauge",
            "Entries read but not yet acknowledged (their turns are not committed yet).",
            "partition",
        ),
        _spec(
            "whatsray_inbox_oldest_pending_seconds",
            "gauge",
            "Age of the oldest entry read but not acknowledged (0 when none).",
            "partition",
        ),
        _spec(
            "whatsray_inbound_unresolved",
            "gauge",
            "Inbound entries with no outcome yet (not acknowledged) for more than a minute:"
            " listed by GET /api/inbound/unresolved.",
            "partition",
        ),
        _spec(
            "whatsray_inbound_unresolved_oldest_seconds",
            "gauge",
            "Age of the partition's oldest inbound entry with no outcome yet, read or not (0 when"
            " none).",
            "partition",
        ),
        _spec(
            "whatsray_quarantined_total",
            "counter",
            "Items the pipeline gave up on, by the step that failed (commit_turn, load_state,"
            " record_messages, on_status, status, delivery, poison) and why (permanent, deadline,"
            " not_served, poison): stored, acknowledged, replayable (GET /api/quarantine).",
            "stage",
            "reason",
        ),
        _spec(
            "whatsray_sessions_active",
            "gauge",
            "Chat sessions held in memory by the partition's SessionHost.",
            "partition",
        ),
        # Turns.
        _spec(
            "whatsray_turns_total",
            "counter",
            "Committed turns by agent and outcome (ok, failed, handoff).",
            "agent",
            "outcome",
        ),
        _spec(
            "whatsray_turn_seconds",
            "histogram",
            "From a turn's first input received to its reply recorded.",
            "agent",
            buckets=SECONDS,
        ),
        _spec(
            "whatsray_turn_stage_seconds",
            "histogram",
            "Time in each stage of a turn: queue (received to started, the double-texting wait "
            "included), route, llm (each model call), tools (each tool call), commit.",
            "stage",
            buckets=SECONDS,
        ),
        _spec(
            "whatsray_routes_total",
            "counter",
            "Routing decisions by the agent chosen (none: handed off), how it was decided "
            "(command, sticky, keyword, pattern, trained, classifier, handoff, fallback...) and, "
            "for a fallback, why (timeout, invalid_answer, error, no_text, single_agent, "
            "disabled).",
            "agent",
            "reason",
            "fallback_cause",
        ),
        # LLM engines.
        _spec(
            "whatsray_llm_requests_total",
            "counter",
            "Model calls by engine and result (ok, error, timeout).",
            "engine",
            "result",
        ),
        _spec(
            "whatsray_llm_seconds",
            "histogram",
            "Duration of a model call.",
            "engine",
            "result",
            buckets=SECONDS,
        ),
        _spec(
            "whatsray_llm_first_token_seconds",
            "histogram",
            "Time to the first streamed token of a model call.",
            "engine",
            "result",
            buckets=SECONDS,
        ),
        _spec(
            "whatsray_llm_tokens_total",
            "counter",
            "Tokens by engine and direction (prompt, completion).",
            "engine",
            "direction",
        ),
        # Agent workers: inference slots (one per concurrent turn) and the queue for them.
        _spec(
            "whatsray_agent_slots_in_use",
            "gauge",
            "Turns holding an inference slot, per agent worker (sum by agent for the pool).",
            "agent",
        ),
        _spec(
            "whatsray_agent_turns_waiting",
            "gauge",
            "Turns queued for an inference slot: above 0 for long, the LLM is saturated.",
            "agent",
        ),
        # Outboxes, per business number.
        _spec(
            "whatsray_outbox_sends_total",
            "counter",
            "Graph API sends by result (sent, retried, failed) and Meta error code (130429, "
            "131056, 131047, 131026, 131048, 131000, 190, other; empty when none).",
            "phone_number_id",
            "result",
            "error_code",
        ),
        _spec(
            "whatsray_outbox_events_total",
            "counter",
            "What the outbox's exactly-once machinery did, by event: submitted (newly recorded), "
            "already_done (submitted again, nothing sent), ambiguous_resend (sent again after a "
            "crash left it unsure), duplicate_send_seen (a second wamid for one outbound id), "
            "status_unknown (a status for a wamid it does not know), replay (a dead letter "
            "sent again).",
            "phone_number_id",
            "event",
        ),
        _spec(
            "whatsray_outbox_queue_depth",
            "gauge",
            "Outbound messages recorded and not yet accepted by Meta.",
            "phone_number_id",
        ),
        _spec(
            "whatsray_outbox_oldest_pending_seconds",
            "gauge",
            "Age of the oldest outbound message not yet accepted by Meta (0 when none).",
            "phone_number_id",
        ),
        _spec(
            "whatsray_rate_limit_wait_seconds",
            "histogram",
            "Waits imposed by the number's throughput limit or the per-user pair limit.",
            "limiter",
            buckets=LONG_SECONDS,
        ),
        _spec(
            "whatsray_template_fallbacks_total",
            "counter",
            "Templates sent in place of free text, by purpose and reason (window_closed, "
            "late_131047).",
            "purpose",
            "reason",
        ),
        _spec(
            "whatsray_statuses_total",
            "counter",
            "Status webhooks applied, by status (sent, delivered, read, failed, ...).",
            "status",
        ),
        _spec(
            "whatsray_dead_letters_total",
            "counter",
            "Messages dead-lettered, by reason (invalid_message, permanent_error, "
            "retries_exhausted, outside_window).",
            "reason",
        ),
        _spec(
            "whatsray_handoffs_active",
            "gauge",
            "Chats handed to a person.",
        ),
        # The scheduler.
        _spec(
            "whatsray_scheduler_runs_total",
            "counter",
            "Job runs by kind (reminder, system, greeting) and result (dispatched, done, "
            "skipped, failed).",
            "kind",
            "result",
        ),
        _spec(
            "whatsray_scheduler_lag_seconds",
            "histogram",
            "From a run's due time to its dispatch.",
            "kind",
            "result",
            buckets=LONG_SECONDS,
        ),
        # The store.
        _spec(
            "whatsray_store_calls_total",
            "counter",
            "Calls to the Store actor, by operation.",
            "op",
        ),
        _spec(
            "whatsray_store_batch_rows",
            "histogram",
            "Items in one batched Store call (turns committed, writes behind), by operation.",
            "op",
            buckets=ROWS,
        ),
        # Every actor.
        _spec(
            "whatsray_actor_restarts_total",
            "counter",
            "Actor restarts by actor kind, counted by each actor when Ray starts it again.",
            "actor",
        ),
        _spec(
            "whatsray_actor_calls_total",
            "counter",
            "Calls one part of the platform makes to another, by target actor and method "
            "(the cost model of docs/hot-path.md).",
            "target",
            "method",
        ),
    )
}
