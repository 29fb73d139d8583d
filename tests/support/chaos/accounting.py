"""The accounting: from what the load sent and what "Meta" accepted, the messages lost,
duplicated, reordered, duplicated within a turn; and what the platform left unresolved."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.chaos.plan import ECHO, TEXT, ChaosEvent, Message, user_of


@dataclass
class Outcome:
    sent: int = 0
    acked_first: int = 0  # the webhook took every copy on the first delivery
    replies: int = 0  # accepted message sends
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    reordered: list[str] = field(default_factory=list)
    within_turn: list[str] = field(default_factory=list)
    other_replies: list[str] = field(default_factory=list)  # not an echo (an apology...)
    unresolved: int | None = None  # None: the endpoint is not there ("n/a")
    unresolved_items: list[Any] = field(default_factory=list)
    actors_not_back: list[str] = field(default_factory=list)
    not_quiet: str | None = None  # what was still busy when the wait for quiet gave up
    rejected: Counter[int | None] = field(default_factory=Counter)  # refused sends by code
    late_posts_failed: int = 0
    skipped_ticks: int = 0  # load ticks with no idle chat (every chat's POST still pending)
    events: list[ChaosEvent] = field(default_factory=list)
    seconds: float = 0.0  # load start to quiet

    @property
    def clean(self) -> bool:
        counts = [self.lost, self.duplicated, self.reordered, self.within_turn]
        return not any(counts) and not self.unresolved and not self.actors_not_back

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "reordered": len(self.reordered),
            "duplicated within a turn": len(self.within_turn),
            "unresolved": "n/a" if self.unresolved is None else self.unresolved,
            "actors not back": len(self.actors_not_back),
        }


def account(messages: dict[int, list[Message]], records: list[dict[str, Any]]) -> Outcome:
    """The counts from what was sent and what the emulator accepted (`GET /emulator/outbound`,
    every message record, in the order the emulator saw them)."""
    outcome = Outcome()
    by_user: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: r["seq"]):
        if record["outcome"] != "accepted":
            outcome.rejected[record.get("error_code")] += 1
            continue
        outcome.replies += 1
        by_user.setdefault(str(record.get("recipient") or ""), []).append(record)
    for chat, sent in messages.items():
        outcome.sent += len(sent)
        outcome.acked_first += sum(1 for m in sent if m.first_status == 200)
        _account_chat(chat, sent, by_user.get(user_of(chat), []), outcome)
    return outcome


def _account_chat(
    chat: int, sent: list[Message], replies: list[dict[str, Any]], outcome: Outcome
) -> None:
    answered: dict[int, list[tuple[int, str]]] = {}  # input index -> (reply position, turn)
    parts = Counter(str(r["body"].get("biz_opaque_callback_data")) for r in replies)
    for outbound_id, times in parts.items():
        if times > 1:
            outcome.within_turn.append(f"chat {chat}: part {outbound_id} accepted {times} times")
    seen_parts: set[str] = set()
    for position, record in enumerate(replies):
        outbound_id = str(record["body"].get("biz_opaque_callback_data"))
        if outbound_id in seen_parts:
            continue  # counted above
        seen_parts.add(outbound_id)
        text = _text(record)
        indexes = _inputs(chat, text)
        if indexes is None:
            outcome.other_replies.append(f"chat {chat}: {outbound_id} {text[:80]!r}")
            continue
        if len(indexes) != len(set(indexes)):
            outcome.within_turn.append(f"chat {chat}: {outbound_id} repeats an input: {text!r}")
        turn = outbound_id.rsplit(":", 1)[0]
        for index in dict.fromkeys(indexes):
            answered.setdefault(index, []).append((position, turn))
    for message in sent:
        answers = answered.get(message.index, [])
        label = (
            f"chat {chat} {message.text} ({message.wamid}, first delivery {message.first_status})"
        )
        if not answers:
            outcome.lost.append(label)
        elif len({turn for _, turn in answers}) > 1:
            turns = sorted({turn for _, turn in answers})
            outcome.duplicated.append(f"{label}: answered by turns {turns}")
    # Order: among messages acked on their first delivery, none answered before an earlier one.
    in_order = [m for m in sent if m.first_status == 200 and m.index in answered]
    order = ["+".join(f"m{i}" for i in _inputs(chat, _text(r)) or []) or "?" for r in replies]
    latest: tuple[int, Message] | None = None  # the latest first answer of an earlier message
    for message in in_order:
        first = min(answered[message.index])
        if latest is not None and first[0] < latest[0]:
            earlier = latest[1]
            outcome.reordered.append(
                f"chat {chat} {message.text} ({message.wamid}) answered by reply {first[0]} "
                f"(turn {first[1]}), before {earlier.text} ({earlier.wamid}), answered by reply "
                f"{latest[0]} (turn {min(answered[earlier.index])[1]}); the chat's replies in "
                f"the order Meta took them: {order}"
            )
        if latest is None or first[0] > latest[0]:
            latest = (first[0], message)


def _text(record: dict[str, Any]) -> str:
    return str(record["body"].get("text", {}).get("body", ""))


def _inputs(chat: int, text: str) -> list[int] | None:
    """The indexes of chat `chat`'s messages an echo reply lists; None: not an echo of them."""
    if not text.startswith(ECHO):
        return None
    indexes = []
    for line in text[len(ECHO) :].split("\n"):
        found = TEXT.match(line.strip())
        if found is None or int(found.group(1)) != chat:
            return None
        indexes.append(int(found.group(2)))
    return indexes


def unresolved(api_url: str, admin_token: str) -> tuple[int | None, list[Any]]:
    """`GET /api/inbound/unresolved?older_than_s=0`: its count and items, (None, []) while the
    platform has no such endpoint."""
    answer = httpx.get(
        f"{api_url}/api/inbound/unresolved",
        params={"older_than_s": 0, "limit": 1000},  # the most it lists; `truncated` past it
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=60,
    )
    if answer.status_code in (404, 405):
        return None, []
    answer.raise_for_status()
    body = answer.json()
    return int(body["count"]), list(body.get("items", []))
