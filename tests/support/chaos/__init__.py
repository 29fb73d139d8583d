"""The chaos soak, shared by `benchmarks/chaos.py` (10 minutes by default) and
`tests/integration/test_chaos_ray.py` (60 seconds on CI): load on the whole platform while its
actors are killed, Valkey restarts and "Meta" misbehaves; then, once everything is quiet, what
every user got back.

The load. `rate` messages a second, open loop, over `chats` chats; the texts are unique and name
their chat and place (`k7-m12`: chat 7's 13th message). A chat's next message goes only after
its previous `POST /emulator/inbound` answered (a user types one message after the other), so a
chat's order is the order it was sent in. Every message reaches the webhook 1 to 3 times: the
emulator delivers it with `duplicates` 0 to 2, and half of the messages that have a copy to spare
send that copy late instead, straight to `/webhook` (signed, as Meta redelivers it) after the
chat's next message. The emulator's `statuses` fault duplicates every status webhook 1 to 3 times
and shuffles them within a second.

The bot. One agent on the scripted echo engine (no model: the soak measures the platform), with
the default double-texting policy, `coalesce`: a reply is `echo: ` and the texts of the messages
its turn answered, one a line, so a reply says which inputs it covers. Quick messages of a chat
(or a backlog re-read after a crash) may be coalesced into one turn; the accounting takes that
into account instead of spacing the messages: an input is answered when some reply lists it.

The chaos, at random moments: each actor kind killed (`ray.kill(actor, no_restart=False)`: a
SessionHost, the outbox, the store, the router, the agent worker, the scheduler; the Serve
ingress replica with `ray.kill(replica)`, and Serve starts another), Valkey restarted once (SIGTERM,
a few seconds down, started again on the same AOF), a burst of Graph 5xx (a share of every Graph
request answered 500) and a 130429 storm (the next sends refused with "throughput exceeded").

The counts, once the platform and the emulator are quiet (`tests/support/quiet.py`), all of which
should be 0:

- lost: a message no accepted reply lists;
- duplicated: a message listed by replies of two or more turns (answered twice);
- reordered: a message whose answer came before the answer to an earlier message of its chat
  (only messages the webhook acknowledged on their first delivery count: a message that went in
  late, after a retry, has no order to keep);
- duplicated within a turn: a reply part (outbound id `turn:part`) accepted twice, or a reply
  listing the same message twice;
- unresolved: `GET /api/inbound/unresolved?older_than_s=0` (`count`), "n/a" while the platform
  has no such endpoint;
- actors not back: a killed actor that is not alive again with one more restart (the ingress: no
  new replica answering `/ready`).
"""

from tests.support.chaos.accounting import Outcome, account, unresolved
from tests.support.chaos.actions import Chaos
from tests.support.chaos.load import Load
from tests.support.chaos.plan import (
    ACTOR_KINDS,
    AGENT,
    FAULTS,
    ChaosEvent,
    ChaosPlan,
    Message,
    chaos_agents,
    chat_key,
    plan_events,
    user_of,
)
from tests.support.chaos.report import evidence, ids_of, report
from tests.support.chaos.soak import Target, run_soak, soak

__all__ = [
    "ACTOR_KINDS",
    "AGENT",
    "FAULTS",
    "Chaos",
    "ChaosEvent",
    "ChaosPlan",
    "Load",
    "Message",
    "Outcome",
    "Target",
    "account",
    "chaos_agents",
    "chat_key",
    "evidence",
    "ids_of",
    "plan_events",
    "report",
    "run_soak",
    "soak",
    "unresolved",
    "user_of",
]
