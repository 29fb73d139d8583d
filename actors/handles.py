"""What `Platform.start` (serve_app.py, the composition root) hands the ingress: the settings it
needs and a handle to every actor of the platform. Frozen, and picklable (handles pickle)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PlatformHandles:
    release: str  # the release these actors belong to (whatsray/release.py)
    redis_url: str
    partitions: int
    # The ingress's secrets: never in a repr (a log line, a traceback).
    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    admin_token: str = field(repr=False)
    phone_number_ids: Sequence[str]
    emulator_url: str | None  # local mode's WhatsApp emulator; None on a cluster
    store: Any
    outboxes: Mapping[str, Any]  # by business number (phone number id)
    router: Any
    agent_workers: Mapping[str, Sequence[Any]]  # by agent name
    session_hosts: Sequence[Any]  # by partition
    scheduler: Any
    llm: Mapping[str, Any]  # the vLLM deployments' handles, by engine key
