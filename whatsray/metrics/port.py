"""The metrics port: instruments the core records to, and the backend they write through.

The core never imports a metrics library. It records to the instruments in
`whatsray.metrics` (one per catalog entry); each process binds them once to a backend:
Ray's `ray.util.metrics` in actors and Serve replicas (`actors/metrics.py`, exported by Ray's
metrics agent on every node), `prometheus-client` everywhere else (the default: tests, the
in-process pipeline, `whatsray emulator`). Binding again (`use`) switches every instrument.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from whatsray.metrics.catalog import MetricSpec

__all__ = [
    "Counter",
    "CounterSink",
    "Gauge",
    "GaugeSink",
    "Histogram",
    "HistogramSink",
    "MetricsBackend",
    "current_backend",
    "use",
]

Labels = Mapping[str, str]


class CounterSink(Protocol):
    def inc(self, amount: float, labels: Labels) -> None: ...


class GaugeSink(Protocol):
    def set(self, value: float, labels: Labels) -> None: ...


class HistogramSink(Protocol):
    def observe(self, value: float, labels: Labels) -> None: ...


class MetricsBackend(Protocol):
    """Makes the library's instrument for a catalog entry (called once per entry and binding)."""

    def counter(self, spec: MetricSpec) -> CounterSink: ...

    def gauge(self, spec: MetricSpec) -> GaugeSink: ...

    def histogram(self, spec: MetricSpec) -> HistogramSink: ...


class _Binding:
    backend: MetricsBackend | None = None
    generation = 0


def use(backend: MetricsBackend) -> None:
    """Bind every instrument of this process to `backend` (from the next record on)."""
    _Binding.backend = backend
    _Binding.generation += 1


def current_backend() -> MetricsBackend:
    if _Binding.backend is None:  # nobody bound one: prometheus-client's default registry
        from whatsray.metrics.prometheus import PrometheusBackend

        use(PrometheusBackend())
    assert _Binding.backend is not None
    return _Binding.backend


class _Instrument:
    __slots__ = ("_generation", "_label_names", "_sink", "spec")

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self._label_names = frozenset(spec.labels)
        self._sink: object = None
        self._generation = -1

    def _bound(self) -> object:
        if self._generation != _Binding.generation or self._sink is None:
            backend = current_backend()
            self._sink = self._make(backend)
            self._generation = _Binding.generation
        return self._sink

    def _make(self, backend: MetricsBackend) -> object:
        raise NotImplementedError

    def _labels(self, labels: Mapping[str, object]) -> dict[str, str]:
        # A wrong label set is a bug in the caller: fail loudly, never export a second shape.
        if labels.keys() != self._label_names:
            raise ValueError(
                f"{self.spec.name} takes labels {sorted(self._label_names)}, got {sorted(labels)}"
            )
        return {name: str(value) for name, value in labels.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r})"


class Counter(_Instrument):
    __slots__ = ()

    def _make(self, backend: MetricsBackend) -> CounterSink:
        return backend.counter(self.spec)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0:
            raise ValueError(f"{self.spec.name}: a counter only goes up, got {amount}")
        if amount == 0:
            return  # nothing to count (and Ray's counters refuse 0)
        sink: CounterSink = self._bound()  # type: ignore[assignment]
        sink.inc(amount, self._labels(labels))


class Gauge(_Instrument):
    __slots__ = ()

    def _make(self, backend: MetricsBackend) -> GaugeSink:
        return backend.gauge(self.spec)

    def set(self, value: float, **labels: object) -> None:
        sink: GaugeSink = self._bound()  # type: ignore[assignment]
        sink.set(value, self._labels(labels))


class Histogram(_Instrument):
    __slots__ = ()

    def _make(self, backend: MetricsBackend) -> HistogramSink:
        return backend.histogram(self.spec)

    def observe(self, value: float, **labels: object) -> None:
        sink: HistogramSink = self._bound()  # type: ignore[assignment]
        sink.observe(max(0.0, value), self._labels(labels))
