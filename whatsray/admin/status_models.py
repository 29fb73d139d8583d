"""The body of `GET /api/status` (its public contract, shown in the OpenAPI document).

A part of the platform that did not answer in time shows as null (its numbers, or the whole
section) and is named in `unavailable`; everything else is still there. Times are unix seconds;
ages are seconds.
"""

from __future__ import annotations

from pydantic import Field

from whatsray.admin.models import _Body

__all__ = [
    "AgentStatusOut",
    "InboxPersistenceOut",
    "NextRunOut",
    "OutboxStatusOut",
    "PartitionStatusOut",
    "StatusOut",
]


class PartitionStatusOut(_Body):
    partition: int
    lag: int | None = Field(
        None, description="Entries not yet read by the partition's SessionHost."
    )
    pending: int | None = Field(None, description="Entries read and not yet acknowledged.")
    oldest_pending_s: float | None = Field(
        None, description="Age of the oldest pending entry (0: none)."
    )
    sessions_active: int | None = Field(None, description="Chat sessions its SessionHost holds.")
    sessions_busy: int | None = Field(None, description="Of those, sessions with a turn to run.")


class AgentStatusOut(_Body):
    agent: str
    workers: int | None = None
    running: int | None = Field(None, description="Turns running on the engine now.")
    waiting: int | None = Field(None, description="Turns queued for an inference slot.")
    capacity: int | None = Field(None, description="Turns the agent's workers run at once.")
    saturated: bool | None = Field(None, description="A new turn would wait for inference now.")
    engine_running: int | None = Field(
        None, description="Requests the engine runs (vLLM), if known."
    )
    engine_waiting: int | None = Field(None, description="Requests queued in the engine, if known.")


class OutboxStatusOut(_Body):
    phone_number_id: str
    queue_depth: int | None = Field(None, description="Recorded and not yet accepted by Meta.")
    oldest_pending_s: float | None = Field(
        None, description="Age of the oldest of those (null: none)."
    )
    throughput_mps: float | None = Field(None, description="The configured messages per second.")
    tokens_available: float | None = Field(None, description="Throughput tokens there now.")
    pair_buckets: int | None = Field(None, description="Recipients whose pair rate is tracked.")
    waiting_sends: int | None = Field(None, description="Sends waiting for a rate-limit token now.")


class NextRunOut(_Body):
    job_id: str
    name: str
    kind: str
    chat: str | None
    at: float = Field(description="When the job's timer fires next.")


class InboxPersistenceOut(_Body):
    aof_enabled: bool = Field(description="The inbox's Redis has its append-only file on.")
    rdb_save: str | None = Field(
        description='Its RDB snapshot schedule ("": none); null: unknown (CONFIG GET refused).'
    )
    warning: str | None = Field(
        description="What a Redis restart would lose; null when the append-only file is on."
    )


class StatusOut(_Body):
    taken_at: float
    partitions: list[PartitionStatusOut]
    agents: list[AgentStatusOut]
    outboxes: list[OutboxStatusOut]
    dead_letters: int | None = Field(description="Dead letters not replayed yet.")
    handoffs: int | None = Field(description="Chats handed to a person now.")
    next_runs: list[NextRunOut] | None = Field(description="Soonest first; null: unavailable.")
    inbox_persistence: InboxPersistenceOut | None = Field(
        None, description="Whether the inbox survives a Redis restart; null: unavailable."
    )
    unavailable: list[str] = Field(
        description='Parts that did not answer in time: "inbox 0", "session_host 1", "store"...'
    )
