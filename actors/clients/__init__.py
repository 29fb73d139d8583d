"""Typed clients over actor handles: one narrow class per consumer and target.

Each client implements exactly the protocol its consumer takes (the pipeline's `HostStorePort`,
the outbox's `OutboundLedger`, the admin API's `AdminStorePort`...), so mypy checks it against
that protocol structurally (the `_check` function of each module). Each method is one remote
call of the actor method of the same name, and counts itself in `whatsray.calls.calls` under
`(target, method)`: every actor reports its process's counts (`call_counts`), and the end-to-end
benchmark sums them (docs/architecture.md, "The cost of a message").

Targets: "store", "outbox", "router", "agent", "scheduler", "session_host".
"""

from __future__ import annotations

from actors.clients.agents import AgentPool
from actors.clients.outbox import (
    AdminOutboxClient,
    PipelineOutboxClient,
    ReplayerClient,
    ToolOutboxClient,
)
from actors.clients.probe import ProbeClient
from actors.clients.router import RouterClient
from actors.clients.scheduler import JobsClient, SchedulerStatusClient
from actors.clients.session_host import PeerHostClient, SessionHostClient
from actors.clients.store import (
    AdminStoreClient,
    HostStoreClient,
    JobStoreClient,
    LedgerClient,
    ToolStoreClient,
)

__all__ = [
    "AdminOutboxClient",
    "AdminStoreClient",
    "AgentPool",
    "HostStoreClient",
    "JobStoreClient",
    "JobsClient",
    "LedgerClient",
    "PeerHostClient",
    "PipelineOutboxClient",
    "ProbeClient",
    "ReplayerClient",
    "RouterClient",
    "SchedulerStatusClient",
    "SessionHostClient",
    "ToolOutboxClient",
    "ToolStoreClient",
]
