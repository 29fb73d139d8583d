"""The shipped observability configs: the alert rules load in promtool, the dashboard imports
as is, and the dashboard, the rules and the metric catalog name the same metrics
(docs/metrics.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prometheus import (
    DASHBOARD,
    RULES,
    alert_expressions,
    alert_rules,
    dashboard_panels,
    dashboard_queries,
    metric_names,
    substitute_grafana_variables,
)
from whatsray.metrics import CATALOG
from whatsray.observability.prometheus_config import prometheus_config, render

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = ROOT / "configs" / "prometheus" / "prometheus.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RULE_TESTS = ROOT / "tests" / "data" / "prometheus" / "whatsray-rules.test.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: scripts/test installs Debian's prometheus package"
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False)


# -- the alert rules ---------------------------------------------------------------------------


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_each_alert_fires_when_it_should_and_only_then() -> None:
    # Timelines for every alert, restarted processes (new series that start at 1) included.
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_tests_cover_every_alert() -> None:
    tested = RULE_TESTS.read_text()
    assert [name for name in _alerts() if f'alertname="{name}"' not in tested] == []


def test_promtool_rejects_a_rule_with_a_bad_expression(tmp_path: Path) -> None:
    broken = yaml.safe_load(RULES.read_text())
    broken["groups"][0]["rules"][0]["expr"] = "sum by (le (rate(whatsray_webhook_seconds[5m]))"
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert promtool("check", "rules", str(path)).returncode != 0


def test_every_alert_tells_the_operator_what_to_do() -> None:
    doc = METRICS_DOC.read_text()
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"].strip(), name
        description = rule["annotations"]["description"]
        # Each points at its own section of docs/metrics.md, and that section exists.
        assert f"docs/metrics.md#{name.lower()}" in description, name
        assert f"\n### {name}\n" in doc, name


def test_the_issue_s_alerts_are_all_there() -> None:
    by_metric = {name: metric_names(str(rule["expr"])) for name, rule in _alerts().items()}
    assert by_metric["WhatsrayWebhookSlow"] == {"whatsray_webhook_seconds"}
    assert by_metric["WhatsrayInboxLagGrowing"] == {"whatsray_inbox_lag_entries"}
    assert by_metric["WhatsrayInboxEntryStuck"] == {"whatsray_inbox_oldest_pending_seconds"}
    assert '"130429"' in _alerts()["WhatsrayOutboxThroughputLimited"]["expr"]
    assert '"131056"' in _alerts()["WhatsrayOutboxPairRateLimited"]["expr"]
    assert by_metric["WhatsrayDeadLetters"] == {"whatsray_dead_letters_total"}
    assert by_metric["WhatsrayLLMSaturated"] == {"whatsray_agent_turns_waiting"}
    assert by_metric["WhatsrayActorRestartLoop"] == {"whatsray_actor_restarts_total"}
    assert _alerts()["WhatsrayInboxLagGrowing"]["for"] == "5m"


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in alert_rules()}


# -- the dashboard -----------------------------------------------------------------------------


def test_the_dashboard_imports_as_is_with_the_datasource_as_a_variable() -> None:
    dashboard = yaml.safe_load(DASHBOARD.read_text())  # JSON is YAML
    assert "__inputs" not in dashboard
    assert dashboard["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_panel_uses_the_datasource_variable_and_has_a_query() -> None:
    panels = dashboard_panels()
    assert len(panels) >= 30
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]


def test_grafana_variables_become_fixed_values() -> None:
    assert substitute_grafana_variables("rate(x[$__rate_interval])") == "rate(x[1m])"
    assert substitute_grafana_variables("rate(x[${__interval}])") == "rate(x[1m])"
    with pytest.raises(ValueError, match="cluster"):
        substitute_grafana_variables('x{cluster="$cluster"}')
    assert not any("$" in query for query in dashboard_queries())


# -- one set of names --------------------------------------------------------------------------


def test_every_catalog_metric_is_on_the_dashboard() -> None:
    shown = set().union(*(metric_names(query) for query in dashboard_queries()))
    assert sorted(set(CATALOG) - shown) == []


def test_the_dashboard_and_the_rules_name_only_catalog_metrics() -> None:
    used = set().union(*(metric_names(q) for q in dashboard_queries() + alert_expressions()))
    assert sorted(used - set(CATALOG)) == []


def test_the_name_check_catches_an_unknown_metric() -> None:
    names = metric_names("sum(rate(whatsray_turn_seconds_bucket[1m])) + whatsray_turns_totl")
    assert names - set(CATALOG) == {"whatsray_turns_totl"}
    assert "whatsray_turn_seconds" in names


# -- the Prometheus config ---------------------------------------------------------------------


def test_the_shipped_config_is_the_generator_s_default() -> None:
    assert yaml.safe_load(SHIPPED_CONFIG.read_text()) == prometheus_config()


def test_the_shipped_config_strips_ray_s_prefix_and_loads_the_rules() -> None:
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["file_sd_configs"][0]["files"] == ["/tmp/ray/prom_metrics_service_discovery.json"]
    (relabel,) = job["metric_relabel_configs"]
    assert re.fullmatch(relabel["regex"], "ray_whatsray_turns_total")
    assert not re.fullmatch(relabel["regex"], "ray_tasks")  # Ray's own keep their names
    assert re.sub(relabel["regex"], "\\1", "ray_whatsray_turns_total") == "whatsray_turns_total"
    assert (SHIPPED_CONFIG.parent / config["rule_files"][0]) == RULES


def test_promtool_accepts_the_shipped_config() -> None:
    result = promtool("check", "config", str(SHIPPED_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_promtool_accepts_a_generated_config_with_static_targets(tmp_path: Path) -> None:
    config = prometheus_config(
        scrape_interval="5s",
        ray_service_discovery=None,
        static_targets=["127.0.0.1:8080"],
        rule_files=[RULES],
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(render(config))
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [job["job_name"] for job in config["scrape_configs"]] == ["whatsray"]
    assert config["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}


def test_a_config_with_nothing_to_scrape_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing to scrape"):
        prometheus_config(ray_service_discovery=None)
