"""Read what the code under test recorded through `whatsray.metrics`.

`MetricsProbe()` binds every instrument of this process to a fresh prometheus-client registry
(so a test sees only its own samples) and sums samples by name and labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from whatsray import metrics
from whatsray.metrics.prometheus import PrometheusBackend


class MetricsProbe:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        metrics.use(PrometheusBackend(self.registry))

    def value(self, sample: str, **labels: object) -> float:
        """The sum of the samples named `sample` (`..._total`, `..._count`, a gauge's name) whose
        labels include `labels`."""
        wanted = {name: str(value) for name, value in labels.items()}
        return sum(
            s.value
            for family in self.registry.collect()
            for s in family.samples
            if s.name == sample and wanted.items() <= s.labels.items()
        )
