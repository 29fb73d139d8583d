"""The soak's report: the result table, the chaos log, examples of what went wrong, and the
Ray log lines that name the messages that went wrong."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from tests.support.chaos.accounting import Outcome
from tests.support.chaos.plan import ChaosPlan


def report(outcome: Outcome, plan: ChaosPlan, *, examples: int = 10) -> list[str]:
    """The result table, the chaos log and examples of what went wrong, as markdown lines."""
    counts = outcome.summary()
    lines = [
        "| " + " | ".join(["minutes", "msg/s", "chats", *counts]) + " |",
        "|" + "---|" * (3 + len(counts)),
        "| "
        + " | ".join(
            [f"{plan.seconds / 60:g}", f"{plan.rate:g}", str(plan.chats)]
            + [f"{v:,}" if isinstance(v, int) else str(v) for v in counts.values()]
        )
        + " |",
        "",
        f"replies accepted: {outcome.replies:,}; messages acked by the webhook on their first "
        f"delivery: {outcome.acked_first:,} of {outcome.sent:,}; sends refused by 'Meta' by code: "
        f"{dict(outcome.rejected)}; replies that are not an echo: {len(outcome.other_replies)}; "
        f"late copies never taken: {outcome.late_posts_failed}; load ticks with no idle chat: "
        f"{outcome.skipped_ticks}; load start to quiet: {outcome.seconds:.0f} s",
    ]
    if outcome.not_quiet:
        lines.append(f"NOT QUIET: {outcome.not_quiet}")
    lines += ["", "| at s | chaos | target | back after s | note |", "|---|---|---|---|---|"]
    for e in outcome.events:
        back = "never" if e.back_after_s is None else f"{e.back_after_s:.1f}"
        lines.append(f"| {e.done_at_s or e.at_s:.1f} | {e.kind} | {e.target} | {back} | {e.note} |")
    for title, items in (
        ("lost", outcome.lost),
        ("duplicated", outcome.duplicated),
        ("reordered", outcome.reordered),
        ("duplicated within a turn", outcome.within_turn),
        ("replies that are not an echo", outcome.other_replies),
        ("unresolved", outcome.unresolved_items),
        ("actors not back", outcome.actors_not_back),
    ):
        if items:
            lines.append(f"\n{title} ({len(items)}), first {min(examples, len(items))}:")
            lines += [f"  {item}" for item in items[:examples]]
    return lines


def evidence(ids: list[str], *, per_id: int = 12, log_dir: Path | None = None) -> list[str]:
    """The lines of the Ray session's logs that name any of `ids` (wamids, turn or outbound ids):
    why a message was lost or answered twice."""
    if log_dir is None:
        import ray

        node = ray._private.worker._global_node
        if node is None:
            return []
        log_dir = Path(node.get_session_dir_path()) / "logs"
    found: dict[str, list[str]] = {i: [] for i in ids}
    for path in sorted(log_dir.glob("*")):
        if not path.is_file() or path.suffix not in (".out", ".err", ".log"):
            continue
        with contextlib.suppress(OSError), path.open(errors="replace") as lines:
            for line in lines:
                for i in ids:
                    if i in line and len(found[i]) < per_id:
                        found[i].append(f"{path.name}: {line.rstrip()[:400]}")
    return [line for i in ids for line in [f"-- {i}", *found[i]]]


def ids_of(items: list[str]) -> list[str]:
    """The wamids and turn ids named in report items (`chat 3 k3-m4 (wamid.X, ...)`)."""
    found = (re.findall(r"wamid\.[A-Za-z0-9_=+/-]+|turn-[0-9a-f]+", item) for item in items)
    return list(dict.fromkeys(i for ids in found for i in ids))
