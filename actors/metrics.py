"""Ray's binding of the metrics port (`whatsray/metrics/port.py`), and what every actor does
when it starts: bind its process's instruments to Ray's metrics and count a restart.

Ray's metrics agent on each node exports what the actors record (prefixed `ray_`), so a cluster
needs no port per actor: Prometheus finds the agents through Ray's service-discovery file
(docs/metrics.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import ray
from ray.util import metrics as ray_metrics

from whatsray import metrics
from whatsray.metrics import MetricSpec

__all__ = ["RayMetricsBackend", "start_actor_metrics"]


class _Sink:
    def __init__(self, metric: ray_metrics.Metric) -> None:
        self._metric = metric

    def inc(self, amount: float, labels: Mapping[str, str]) -> None:
        self._metric.inc(amount, tags=dict(labels))  # type: ignore[attr-defined]

    def set(self, value: float, labels: Mapping[str, str]) -> None:
        self._metric.set(value, tags=dict(labels))  # type: ignore[attr-defined]

    def observe(self, value: float, labels: Mapping[str, str]) -> None:
        self._metric.observe(value, tags=dict(labels))  # type: ignore[attr-defined]


class RayMetricsBackend:
    def counter(self, spec: MetricSpec) -> _Sink:
        # Ray's exporter adds "_total" to a counter's name: give it the name without.
        name = spec.name.removesuffix("_total")
        return _Sink(ray_metrics.Counter(name, spec.help, spec.labels))

    def gauge(self, spec: MetricSpec) -> _Sink:
        return _Sink(ray_metrics.Gauge(spec.name, spec.help, spec.labels))

    def histogram(self, spec: MetricSpec) -> _Sink:
        return _Sink(ray_metrics.Histogram(spec.name, spec.help, list(spec.buckets), spec.labels))


def start_actor_metrics(kind: str) -> None:
    """Call first thing in an actor's constructor (or a replica's): `kind` labels its restarts."""
    metrics.use(RayMetricsBackend())
    with warnings.catch_warnings():  # Ray 2.60 reads its own deprecated `actor_id` in there
        warnings.simplefilter("ignore", DeprecationWarning)
        restarted = ray.get_runtime_context().was_current_actor_reconstructed
    if restarted:
        metrics.actor_restarts.inc(actor=kind)
