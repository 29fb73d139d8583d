"""The metrics on a real platform, seen through a real Prometheus.

The whole app runs on a local Ray whose metrics agent exports on a fixed port; Debian's
`prometheus` scrapes it every second with the config `whatsray local --prometheus` writes and
loads the alert rules of `configs/prometheus/`. Scripted traffic then moves every metric of the
catalog (docs/metrics.md): messages, a duplicate webhook, a bad signature, a status for a message
the app does not know, a 130429 from the emulator, a template fallback, a dead letter, a handoff,
a scheduled run and an actor kill. The tests check that every metric has samples, that the
counters moved by exactly what the traffic implies, that every panel of the Grafana dashboard
returns data and that every alert rule loads and evaluates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.prometheus import (
    DASHBOARD,
    RULES,
    Prometheus,
    alert_expressions,
    dashboard_queries,
    running_prometheus,
)
from tests.support.quiet import wait_quiet
from tests.support.ray_serve import RunningWhatsray, running_whatsray
from tests.support.servers import free_port
from whatsray.metrics import CATALOG
from whatsray.observability.prometheus_config import prometheus_config
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign

pytestmark = pytest.mark.integration

AGENTS = Path(__file__).resolve().parents[1] / "data" / "agents.yaml"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
PNID = DEFAULT_PHONE_NUMBER_ID

BURST = [f"1555300000{i}" for i in range(6)]  # write at once: replies wait for throughput
TWICE = "15553000010"  # its webhook is delivered twice
RATE_LIMITED = "15553000011"  # Meta answers its reply 130429 once
UNDELIVERABLE = "15553000012"  # Meta answers 131026 to every send: a dead letter
REMINDED = "15553000013"  # never wrote: its reminder goes out as a template
HANDED_OFF = BURST[0]

TURNS = len(BURST) + 4  # one each: the burst, TWICE, RATE_LIMITED, UNDELIVERABLE, REMINDED
SENT = len(BURST) + 2 + 1  # accepted by Meta: the burst, TWICE, RATE_LIMITED, the template


@dataclass
class Observed:
    running: RunningWhatsray
    prometheus: Prometheus

    def value(self, expr: str) -> float:
        """The value of a query that yields one series (0 when it yields none)."""
        result = self.prometheus.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    data = tmp_path_factory.mktemp("metrics")
    metrics_port = free_port()
    with running_whatsray(
        data,
        api_timeout_s=60,
        ready_within_s=120,
        partitions=2,
        agents_file=AGENTS,
        throughput_mps=2,  # a burst of replies waits for the number's throughput
        metrics_interval_s=1,
        system_jobs=False,  # only the runs this test schedules
        jobs_file=None,
        ray_options={
            "_metrics_export_port": metrics_port,
            "_system_config": {"metrics_report_interval_ms": 1000},
        },
    ) as running:
        config = prometheus_config(
            ray_service_discovery=None,
            static_targets=[f"127.0.0.1:{metrics_port}"],
            rule_files=[RULES],
        )
        with running_prometheus(config, data / "prometheus") as prometheus:
            _traffic(running)
            # Every counter has reached Ray's agent and Prometheus: the last thing counted.
            seen = Observed(running, prometheus)
            prometheus.wait_until(
                "sum(whatsray_turns_total)",
                lambda r: bool(r) and float(r[0]["value"][1]) >= TURNS,
                timeout=60,
            )
            prometheus.wait_until(
                'sum(whatsray_actor_restarts_total{actor="router"})', bool, timeout=60
            )
            yield seen


def _traffic(running: RunningWhatsray) -> None:
    api, emulator, settings = running.api, running.emulator, running.settings
    assert settings.admin_token is not None
    auth = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}

    def says(user: str, text: str, **extra: Any) -> None:
        body = {"from": user, "message": {"type": "text", "text": text}, **extra}
        emulator.post("/emulator/inbound", json=body).raise_for_status()

    def answered(user: str, count: int = 1, within_s: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within_s
        while True:
            sent = emulator.get("/emulator/outbound", params={"to": user}).json()
            accepted = [r for r in sent if r["outcome"] == "accepted"]
            if len(accepted) >= count:
                return accepted
            assert time.monotonic() < deadline, f"{user} got {sent}"
            time.sleep(0.2)

    def quiet() -> None:
        wait_quiet(settings, emulator, within_s=120)

    # Messages from several users at once: their replies leave together, faster than 2/s.
    with ThreadPoolExecutor(len(BURST)) as pool:
        list(pool.map(lambda user: says(user, f"hi from {user}"), BURST))
    for user in BURST:
        answered(user)
    # The same webhook delivered twice (Meta redelivers): one turn, one duplicate.
    says(TWICE, "once", duplicates=1)
    answered(TWICE)
    # A body whose signature does not match.
    body = (FIXTURES / "message_text.json").read_bytes()
    forged = {SIGNATURE_HEADER: sign("not-the-app-secret", body)}
    assert api.post("/webhook", content=body, headers=forged).status_code == 403
    # A status for a message some other tool sent from the number: stored, unknown here.
    assert settings.app_secret is not None
    body = (FIXTURES / "status_delivered.json").read_bytes()
    signed = {SIGNATURE_HEADER: sign(settings.app_secret.get_secret_value(), body)}
    assert api.post("/webhook", content=body, headers=signed).status_code == 200
    # A message to a second number of the same Meta app, which this app does not serve.
    unserved = json.loads((FIXTURES / "message_text.json").read_text())
    unserved["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999000111222"
    body = json.dumps(unserved).encode()
    signed = {SIGNATURE_HEADER: sign(settings.app_secret.get_secret_value(), body)}
    assert api.post("/webhook", content=body, headers=signed).status_code == 200
    quiet()  # the next send is the reply below, not anything still in flight
    emulator.post(
        "/emulator/faults", json={"next_errors": {"code": 130429, "count": 1}}
    ).raise_for_status()
    says(RATE_LIMITED, "busy?")
    answered(RATE_LIMITED)
    emulator.post(
        "/emulator/faults", json={"recipient_errors": {UNDELIVERABLE: {"code": 131026}}}
    ).raise_for_status()
    says(UNDELIVERABLE, "can you hear me?")
    # A reminder for a user who never wrote: outside the window, its template goes instead.
    run_at = datetime.now(UTC) + timedelta(seconds=2)
    job = {
        "name": "Check in",
        "chat": f"{PNID}:{REMINDED}",
        "payload": {"text": "check in"},
        "trigger": {"type": "date", "run_at": run_at.isoformat()},
    }
    assert api.post("/api/jobs", json=job, headers=auth).status_code == 201
    [template] = answered(REMINDED)
    assert template["body"]["type"] == "template"
    handoff = api.post(f"/api/chats/{PNID}:{HANDED_OFF}/handoff", headers=auth)
    assert handoff.status_code == 200, handoff.text
    _kill_and_wait_for("router")
    quiet()
    dead = api.get("/api/dead-letters", headers=auth).json()
    assert len(dead["dead_letters"]) == 1, dead


def _kill_and_wait_for(name: str) -> None:
    import ray

    import serve_app

    handle = serve_app.find_actor(name)
    ray.kill(handle, no_restart=False)
    deadline = time.monotonic() + 60
    while True:  # the restarted actor answers again
        try:
            ray.get(handle.__ray_ready__.remote(), timeout=5)
            return
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            assert time.monotonic() < deadline, f"{name} did not come back"
            time.sleep(0.5)


def _series(spec_name: str) -> str:
    kind = CATALOG[spec_name].kind
    return f"{spec_name}_count" if kind == "histogram" else spec_name


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_metric_has_samples(observed: Observed, name: str) -> None:
    observed.prometheus.wait_until(f"count({_series(name)})", bool, timeout=30)


def test_counters_moved_by_exactly_what_the_traffic_implies(observed: Observed) -> None:
    value = observed.value
    assert value("sum(whatsray_turns_total)") == TURNS
    assert value('sum(whatsray_turns_total{outcome="ok"})') == TURNS
    assert value("sum(whatsray_turn_seconds_count)") == TURNS
    assert value('sum(whatsray_turn_stage_seconds_count{stage="commit"})') == TURNS
    assert value('sum(whatsray_webhook_requests_total{result="duplicate"})') == 1
    assert value('sum(whatsray_webhook_requests_total{result="bad_signature"})') == 1
    assert value('sum(whatsray_webhook_requests_total{result="malformed"})') == 0
    # Every message webhook, and the status webhooks the emulator sent besides.
    assert value('sum(whatsray_webhook_requests_total{result="accepted"})') >= TURNS
    sends = "sum(whatsray_outbox_sends_total{{{}}})"
    assert value(sends.format('result="sent"')) == SENT
    # The 130429 the test injected, and any the emulator's own limit gave: a burst paced at
    # exactly the tier can arrive a little early (docs/outbox.md, "Order and rate limits").
    # Each is retried.
    refused = [
        r
        for r in observed.running.emulator.get("/emulator/outbound").json()
        if r["outcome"] != "accepted"
    ]
    throughput = sum(1 for r in refused if r["error_code"] == 130429)
    assert throughput >= 1, refused
    assert value(sends.format('result="retried",error_code="130429"')) == throughput
    assert value(sends.format('result="retried"')) == throughput
    assert value(sends.format('result="failed",error_code="131026"')) == 1
    assert value(sends.format('result="failed"')) == 1
    assert value('sum(whatsray_dead_letters_total{reason="permanent_error"})') == 1
    assert value("sum(whatsray_dead_letters_total)") == 1
    assert value('sum(whatsray_quarantined_total{stage="delivery",reason="not_served"})') == 1
    assert value("sum(whatsray_quarantined_total)") == 1
    assert value("sum(whatsray_inbound_unresolved)") == 0
    fallbacks = 'whatsray_template_fallbacks_total{purpose="reminder",reason="window_closed"}'
    assert value(f"sum({fallbacks})") == 1
    assert value("sum(whatsray_template_fallbacks_total)") == 1
    runs = 'whatsray_scheduler_runs_total{kind="reminder",result="dispatched"}'
    assert value(f"sum({runs})") == 1
    assert value("sum(whatsray_scheduler_runs_total)") == 1
    assert value('sum(whatsray_actor_restarts_total{actor="router"})') == 1
    assert value("sum(whatsray_actor_restarts_total)") == 1
    assert value("max(whatsray_handoffs_active)") == 1
    assert value('sum(whatsray_statuses_total{status="delivered"})') >= SENT
    assert value('sum(whatsray_llm_requests_total{result="ok"})') == TURNS
    assert value("sum(whatsray_rate_limit_wait_seconds_count)") >= 1
    # Quiet now: nothing waits in the inbox or the outbox.
    assert value("sum(whatsray_inbox_lag_entries) + sum(whatsray_inbox_pending_entries)") == 0
    assert value("sum(whatsray_outbox_queue_depth)") == 0
    assert value('sum(whatsray_outbox_events_total{event="status_unknown"})') == 1
    # Every reply a turn committed was handed to the outbox once (the template is its own).
    assert value('sum(whatsray_outbox_events_total{event="submitted"})') == TURNS


def test_every_dashboard_panel_returns_data(observed: Observed) -> None:
    queries = dashboard_queries(DASHBOARD)
    assert queries
    empty = [expr for expr in queries if not observed.prometheus.query(expr)]
    assert empty == []


def test_every_alert_rule_loads_and_evaluates_and_only_the_expected_ones_fire(
    observed: Observed,
) -> None:
    for expr in alert_expressions(RULES):
        observed.prometheus.query(expr)  # valid: a bad expression raises here
    rules = observed.prometheus.evaluated_rules()
    assert {rule["name"] for rule in rules} >= {"WhatsrayDeadLetters", "WhatsrayQuarantined"}
    assert [r for r in rules if r["health"] != "ok"] == []
    # The dead letter and the unserved number's message are news; nothing else is wrong.
    active = {r["name"] for r in rules if r.get("state") in ("pending", "firing")}
    assert active <= {"WhatsrayDeadLetters", "WhatsrayQuarantined"}, active


def test_the_metrics_port_answers_without_a_token(observed: Observed) -> None:
    [target] = observed.prometheus.targets()
    response = httpx.get(target["scrapeUrl"], timeout=10)
    assert response.status_code == 200
    assert "ray_whatsray_turns_total" in response.text
