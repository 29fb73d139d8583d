"""Gauges are read, not counted: each owner sets its own every few seconds.

Ray exports a gauge only while it keeps being set (a series not set for about 20 s is dropped,
measured with Ray 2.60), and a dead actor's last values vanish the same way: so the owner of a
gauge sets it again and again, at `every_s` (`WHATSRAY_METRICS_INTERVAL_S`, 5 s by default).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

__all__ = ["report_forever"]

log = logging.getLogger(__name__)


async def report_forever(report: Callable[[], Awaitable[None] | None], every_s: float) -> None:
    """Call `report` now and every `every_s` until cancelled; a failed report is logged and
    tried again next time (a metric must never take its owner down)."""
    while True:
        try:
            done = report()
            if inspect.isawaitable(done):
                await done
        except Exception:
            log.warning("reporting metrics failed; trying again in %.0f s", every_s, exc_info=True)
        await asyncio.sleep(every_s)
