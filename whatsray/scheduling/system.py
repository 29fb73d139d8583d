"""System jobs: platform housekeeping that runs inside the scheduler (no inbox, no chat).

- `cleanup`: deletes settled job runs older than `keep_runs_days` (each job's newest is kept).
  Nothing else needs it: the inbox's dedupe keys expire on their own (a 7-day Redis TTL), early
  statuses are purged by the store as it writes, and a passivated session leaves nothing behind
  (its state is the chat's rows, which are the conversation, not garbage).
- `dead_letter_sweep`: replays, once, the dead letters younger than `max_age_h` whose reason is
  transient (`retries_exhausted:*`: Meta or the network kept failing). A replay's own dead
  letter is never swept again, and a replay id derives from the dead letter, so a sweep that
  runs twice sends once. Permanent failures and `outside_window` are left to a person.
- `daily_summary`: counts of the last `window_h` hours (messages in and out, turns, failed
  turns, dead letters, active chats, job runs), logged and kept as the run's result.

Every task is idempotent: a run interrupted by a crash is run again when the scheduler restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from whatsray.scheduling.models import CronSpec, IntervalSpec, JobSpec, Misfire
from whatsray.scheduling.ports import DeadLetterReplayer, JobStorePort

__all__ = ["TRANSIENT_PREFIX", "SystemTasks", "default_system_jobs"]

log = logging.getLogger(__name__)

TRANSIENT_PREFIX = "retries_exhausted:"
REPLAY_MARK = "~replay:"  # in the outbound id of a replay (whatsray.outbox.replay_outbound_id)
_SWEEP_PAGE = 200


def default_system_jobs() -> tuple[JobSpec, ...]:
    """Registered at every start when absent (a stored one, perhaps stopped, is kept)."""
    hourly_grace = Misfire(grace_s=3600, coalesce=True)
    return (
        JobSpec(
            id="system:cleanup",
            name="Delete old job runs",
            kind="system",
            payload={"task": "cleanup", "keep_runs_days": 30},
            trigger=CronSpec(expression="30 3 * * *"),
            timezone="UTC",
            misfire=hourly_grace,
        ),
        JobSpec(
            id="system:dead-letter-sweep",
            name="Replay transient dead letters once",
            kind="system",
            payload={"task": "dead_letter_sweep", "max_age_h": 24},
            trigger=IntervalSpec(seconds=900),
            timezone="UTC",
            misfire=hourly_grace,
        ),
        JobSpec(
            id="system:daily-summary",
            name="Daily summary",
            kind="system",
            payload={"task": "daily_summary", "window_h": 24},
            trigger=CronSpec(expression="0 6 * * *"),
            timezone="UTC",
            misfire=Misfire(grace_s=6 * 3600, coalesce=True),
        ),
    )


def _number(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"payload.{name} must be a positive number, got {value!r}")
    return float(value)


class SystemTasks:
    def __init__(
        self,
        store: JobStorePort,
        *,
        replayer_for: Callable[[str], DeadLetterReplayer] | None,
        now: Callable[[], float],
    ) -> None:
        self._store = store
        self._replayer_for = replayer_for
        self._now = now

    async def run(self, params: Mapping[str, Any]) -> dict[str, Any]:
        task = params.get("task")
        if task == "cleanup":
            return await self.cleanup(_number(params, "keep_runs_days", 30))
        if task == "dead_letter_sweep":
            return await self.dead_letter_sweep(_number(params, "max_age_h", 24))
        if task == "daily_summary":
            return await self.daily_summary(_number(params, "window_h", 24))
        raise ValueError(f"unknown system task {task!r}")

    async def cleanup(self, keep_runs_days: float) -> dict[str, Any]:
        deleted = await self._store.prune_job_runs(self._now() - keep_runs_days * 86400)
        return {"job_runs_deleted": deleted}

    async def dead_letter_sweep(self, max_age_h: float) -> dict[str, Any]:
        if self._replayer_for is None:
            return {"replayed": 0, "considered": 0, "failed": 0, "note": "no outboxes"}
        since = self._now() - max_age_h * 3600
        letters = await self._store.list_dead_letters(_SWEEP_PAGE, False, 0)  # newest first
        replayed = considered = failed = 0
        for letter in letters:
            if letter.created_at < since:
                break
            if not letter.reason.startswith(TRANSIENT_PREFIX) or REPLAY_MARK in letter.outbound_id:
                continue
            considered += 1
            message = await self._store.get_outbound(letter.outbound_id)
            if message is None:
                continue
            try:
                replayer = self._replayer_for(message.phone_number_id)
                await replayer.replay_dead_letter(letter.dead_letter_id)
            except Exception:  # one bad letter must not stop the sweep
                log.warning("dead-letter sweep: replay of %s failed", letter.dead_letter_id)
                failed += 1
            else:
                replayed += 1
        return {"replayed": replayed, "considered": considered, "failed": failed}

    async def daily_summary(self, window_h: float) -> dict[str, Any]:
        counts = await self._store.activity_since(self._now() - window_h * 3600)
        log.info("summary of the last %g h: %s", window_h, counts)
        return {"window_h": window_h, **counts}
