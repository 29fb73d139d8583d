"""Counts of the calls this process makes to other parts of the platform.

The cost of a message is counted, not guessed (docs/hot-path.md): every typed client at the Ray
edge (`actors/clients.py`) counts each call it makes here, by target and method, and every actor
can report its process's counts. The end-to-end benchmark sums them over the platform and divides
by the messages it sent: Store calls per message, actor calls per message.

Plain counters in one process-wide object: an actor is one process, so its counts are its own.
Each count is also exported as `whatsray_actor_calls_total{target, method}` (docs/metrics.md).
"""

from __future__ import annotations

from collections import Counter
from threading import Lock

from whatsray import metrics

__all__ = ["CallCounter", "calls"]


class CallCounter:
    """Counts `(target, method)` pairs. Thread-safe: the Store's threads may count too."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = Lock()

    def count(self, target: str, method: str, n: int = 1) -> None:
        with self._lock:
            self._counts[(target, method)] += n
        metrics.actor_calls.inc(n, target=target, method=method)

    def snapshot(self) -> dict[str, int]:
        """`{"target.method": count}`: plain, picklable, easy to sum across processes."""
        with self._lock:
            return {f"{target}.{method}": n for (target, method), n in self._counts.items()}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


calls = CallCounter()
