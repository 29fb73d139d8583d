"""The soak's plan: how much load and chaos (`ChaosPlan`), the messages the load sends, the
chaos events it plans and the soak's agents file."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from tests.support.echo_agents import write_echo_agents
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID

AGENT = "echo"
ECHO = "echo: "
ACTOR_KINDS = ("session_host", "outbox", "store", "router", "agent_worker", "scheduler", "ingress")
FAULTS = ("valkey_restart", "graph_5xx", "storm_130429")
TEXT = re.compile(r"^k(\d+)-m(\d+)$")


@dataclass(frozen=True)
class ChaosPlan:
    seconds: float = 600.0
    rate: float = 20.0
    # 20 msg/s over 200 chats: a message every 10 s per chat, under Meta's pair rate (about one
    # message per 6 s to one user, after a burst of 45): more per chat and the replies queue
    # behind the pair rate (131056) without end, which is not what the soak is about.
    chats: int = 200
    kills_per_kind: int = 2  # each actor kind killed this many times
    valkey_down_s: float = 3.0
    burst_s: float = 5.0  # how long the Graph 5xx burst lasts
    burst_error_rate: float = 0.5
    storm_sends: int = 40  # sends refused with 130429 in the storm
    status_copies: int = 3
    status_shuffle_s: float = 1.0
    late_share: float = 0.5  # of messages with a spare copy: the copy goes late, to /webhook
    seed: int = 11
    quiet_within_s: float = 600.0
    partitions: int = 2


@dataclass
class Message:
    chat: int
    index: int
    text: str
    wamid: str | None = None
    first_status: int | None = None  # the emulator's answer: 200 = the webhook took every copy
    copies: int = 1
    late: bool = False


@dataclass
class ChaosEvent:
    at_s: float  # planned, from the start of the load
    kind: str  # an ACTOR_KINDS entry or a FAULTS entry
    target: str = ""
    done_at_s: float | None = None
    back_after_s: float | None = None  # killed actor answering again (or fault over)
    restarts_before: int | None = None
    note: str = ""


def user_of(chat: int) -> str:
    return f"1555400{chat:04d}"


def chat_key(chat: int) -> str:
    return f"{DEFAULT_PHONE_NUMBER_ID}:{user_of(chat)}"


def plan_events(plan: ChaosPlan) -> list[ChaosEvent]:
    """Every actor kind `kills_per_kind` times and every fault once, at random moments between
    5 % and 85 % of the load (so the last recovery happens under load too)."""
    rng = random.Random(plan.seed)
    kinds = [k for k in ACTOR_KINDS for _ in range(plan.kills_per_kind)] + list(FAULTS)
    events = [ChaosEvent(rng.uniform(0.05, 0.85) * plan.seconds, kind) for kind in kinds]
    return sorted(events, key=lambda e: e.at_s)


def chaos_agents(directory: Path) -> Path:
    """The soak's agents file, written into `directory`: one echo agent, no classifier, the
    default double-texting policy (coalesce, its default quiet period and maximum wait)."""
    return write_echo_agents(directory / "chaos-agents.yaml", "coalesce")
