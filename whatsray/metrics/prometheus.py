"""The `prometheus-client` binding of the metrics port: for every process without Ray."""

from __future__ import annotations

from collections.abc import Mapping

import prometheus_client
from prometheus_client import CollectorRegistry

from whatsray.metrics.catalog import MetricSpec
from whatsray.metrics.port import current_backend

__all__ = ["PrometheusBackend", "exposition"]


class _Sink:
    def __init__(self, metric: prometheus_client.metrics.MetricWrapperBase, labelled: bool) -> None:
        self._metric = metric
        self._labelled = labelled

    def _child(self, labels: Mapping[str, str]) -> prometheus_client.metrics.MetricWrapperBase:
        return self._metric.labels(**labels) if self._labelled else self._metric

    def inc(self, amount: float, labels: Mapping[str, str]) -> None:
        self._child(labels).inc(amount)  # type: ignore[attr-defined]

    def set(self, value: float, labels: Mapping[str, str]) -> None:
        self._child(labels).set(value)  # type: ignore[attr-defined]

    def observe(self, value: float, labels: Mapping[str, str]) -> None:
        self._child(labels).observe(value)  # type: ignore[attr-defined]


class PrometheusBackend:
    """Registers each catalog entry in `registry` (prometheus-client's default one if None)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self._made: dict[str, _Sink] = {}

    def _sink(self, spec: MetricSpec, cls: type, **extra: object) -> _Sink:
        # One instrument per name and registry, however often the port binds again.
        if spec.name not in self._made:
            name = (
                spec.name.removesuffix("_total") if cls is prometheus_client.Counter else spec.name
            )
            metric = cls(name, spec.help, spec.labels, registry=self.registry, **extra)
            self._made[spec.name] = _Sink(metric, bool(spec.labels))
        return self._made[spec.name]

    def counter(self, spec: MetricSpec) -> _Sink:
        return self._sink(spec, prometheus_client.Counter)

    def gauge(self, spec: MetricSpec) -> _Sink:
        return self._sink(spec, prometheus_client.Gauge)

    def histogram(self, spec: MetricSpec) -> _Sink:
        return self._sink(spec, prometheus_client.Histogram, buckets=spec.buckets)


def exposition() -> tuple[bytes, str]:
    """This process's metrics in Prometheus's text format, and its content type: for a process
    without Ray that serves its own `/metrics` (`whatsray webhook listen`)."""
    backend = current_backend()
    registry = backend.registry if isinstance(backend, PrometheusBackend) else CollectorRegistry()
    return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST
