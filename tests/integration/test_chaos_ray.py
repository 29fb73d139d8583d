"""The chaos soak on CI: 60 s of load on the whole platform on real Ray while every kind of actor
is killed once (a SessionHost, the outbox, the store, the router, the agent worker, the
scheduler, the Serve ingress replica), Valkey restarts, a burst of Graph 5xx and a 130429 storm
hit the sends, every webhook arrives 1 to 3 times and the statuses duplicated and shuffled.
Once the platform and the emulator are quiet: nothing lost, nothing answered twice, nothing out
of order, no reply part sent twice, nothing unresolved, every killed actor back.

The soak itself is `tests/support/chaos/`, shared with `benchmarks/chaos.py` (10 minutes).
Guarantees 1, 2, 3, 6 and 7 of docs/architecture.md, section 1, at once.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.chaos import ACTOR_KINDS, FAULTS, ChaosPlan, report, run_soak

# A message every 8 s per chat: under Meta's pair rate (tests/support/chaos/plan.py).
PLAN = ChaosPlan(seconds=60, rate=5, chats=40, kills_per_kind=1, quiet_within_s=300, seed=3)


def test_a_minute_of_chaos_loses_doubles_and_reorders_nothing(tmp_path: Path) -> None:
    with run_soak(tmp_path, PLAN, progress=lambda _: None) as outcome:
        pass  # the platform stops on the way out
    table = "\n".join(report(outcome, PLAN))
    print(table)  # shown with -s, or on a failure
    # Every kind of chaos happened, and each one worked.
    assert sorted(e.kind for e in outcome.events) == sorted([*ACTOR_KINDS, *FAULTS]), table
    assert not [e for e in outcome.events if e.note], table
    # A tick finding every chat still waiting on its previous message sends nothing.
    assert outcome.sent + outcome.skipped_ticks == round(PLAN.rate * PLAN.seconds), table
    assert outcome.not_quiet is None, table
    assert outcome.summary() | {"unresolved": 0} == {
        "sent": outcome.sent,
        "lost": 0,
        "duplicated": 0,
        "reordered": 0,
        "duplicated within a turn": 0,
        "unresolved": 0,
        "actors not back": 0,
    }, table
    assert outcome.unresolved in (None, 0), table  # None: the endpoint is not there yet
    assert not outcome.other_replies, table
