"""The Prometheus config that scrapes whatsray: built here, written by `whatsray local
--prometheus`, and shipped as `configs/prometheus/prometheus.yml` (a test keeps them in step).

Ray's metrics agent on every node exports every actor's metrics; the head's dashboard lists those
agents in a service-discovery file. Ray's exporter puts `ray_` in front of each name: the relabel
rule takes it off again, so dashboards and alerts use the catalog's plain `whatsray_*` names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

__all__ = [
    "RAY_PREFIX_RELABEL",
    "RAY_SERVICE_DISCOVERY_FILE",
    "RULES_FILE",
    "prometheus_config",
    "render",
]

# Ray 2.60 writes it into the session directory and links it here, in its temp dir (/tmp/ray
# unless `ray start --temp-dir`), a path that outlives sessions.
RAY_SERVICE_DISCOVERY_FILE = Path("/tmp/ray/prom_metrics_service_discovery.json")  # noqa: S108
RULES_FILE = "whatsray-rules.yml"  # next to prometheus.yml in configs/prometheus/

RAY_PREFIX_RELABEL: dict[str, Any] = {
    "source_labels": ["__name__"],
    "regex": "ray_(whatsray_.*)",
    "target_label": "__name__",
    "replacement": "$1",
}

_HEADER = """\
# Prometheus config for whatsray (docs/metrics.md). Built by
# whatsray.observability.prometheus_config; configs/prometheus/prometheus.yml is its default.
"""


def prometheus_config(
    *,
    scrape_interval: str = "15s",
    evaluation_interval: str | None = None,
    ray_service_discovery: Path | str | None = RAY_SERVICE_DISCOVERY_FILE,
    static_targets: Sequence[str] = (),
    rule_files: Sequence[Path | str] = (RULES_FILE,),
) -> dict[str, Any]:
    """A Prometheus config as a dict.

    `ray_service_discovery`: Ray's service-discovery file (None: no such job, e.g. when the one
    local metrics port is a static target). `static_targets`: `host:port` of further metrics
    endpoints (a process without Ray, a pinned Ray metrics port). Relative `rule_files` are
    resolved by Prometheus against the config file's directory.
    """
    relabel = [dict(RAY_PREFIX_RELABEL)]
    jobs: list[dict[str, Any]] = []
    if ray_service_discovery is not None:
        jobs.append(
            {
                "job_name": "ray",
                # The file is a link: a rewrite of its target raises no file event here.
                "file_sd_configs": [
                    {"files": [str(ray_service_discovery)], "refresh_interval": "30s"}
                ],
                "metric_relabel_configs": relabel,
            }
        )
    if static_targets:
        jobs.append(
            {
                "job_name": "whatsray",
                "static_configs": [{"targets": list(static_targets)}],
                "metric_relabel_configs": relabel,
            }
        )
    if not jobs:
        raise ValueError("nothing to scrape: give Ray's service-discovery file or static targets")
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval or scrape_interval,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": jobs,
    }


def render(config: dict[str, Any]) -> str:
    """`config` as the YAML text of a prometheus.yml."""
    body: str = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    return _HEADER + body
