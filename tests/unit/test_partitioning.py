"""partition_for: stable across processes and Python versions, spread evenly, chat-aligned."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from whatsray.inbox import NO_CHAT_PARTITION, partition_for, partition_of_event
from whatsray.whatsapp.events import ChatKey, MessageEvent, OtherEvent, StatusEvent, StatusValue
from whatsray.whatsapp.message_content import MessageType, TextContent

# Computed once (blake2b, 8-byte digest, big-endian, modulo). If one changes, every deployed
# inbox would route chats to other partitions: that is a breaking change, not a refactor.
PINNED = [
    ("123456789:15551234567", 16, 6),
    ("123456789:15551234567", 7, 1),
    ("123456789:US.13491208655302741918", 16, 4),
    ("123456789:US.13491208655302741918", 1024, 756),
    ("987:447700900123", 16, 12),
    ("1:x", 7, 3),
]


@pytest.mark.parametrize(("chat", "partitions", "expected"), PINNED)
def test_pinned_values(chat: str, partitions: int, expected: int) -> None:
    assert partition_for(chat, partitions) == expected


def test_a_chat_key_and_its_canonical_string_agree() -> None:
    key = ChatKey(phone_number_id="123456789", user="US.13491208655302741918")
    assert partition_for(key, 16) == partition_for(str(key), 16) == 4


def test_stable_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from whatsray.inbox.partitioning import partition_for\n"
        "print([partition_for(c, p) for c, p, _ in " + repr(PINNED) + "])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == str([expected for _, _, expected in PINNED])


def test_spread_over_partitions_is_even() -> None:
    partitions = 16
    counts = Counter(partition_for(f"123456789:1555{n:07d}", partitions) for n in range(16_000))
    assert set(counts) == set(range(partitions))
    # 1,000 expected per partition; a fair hash stays well within 15% on this many keys.
    assert min(counts.values()) > 850
    assert max(counts.values()) < 1150


def test_always_in_range() -> None:
    for partitions in (1, 2, 3, 5, 8, 13, 64):
        seen = {partition_for(f"pn:{n}", partitions) for n in range(500)}
        assert seen <= set(range(partitions))
        assert len(seen) == partitions


@pytest.mark.parametrize("partitions", [0, -1])
def test_rejects_no_partitions(partitions: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        partition_for("1:x", partitions)
    with pytest.raises(ValueError, match="at least 1"):
        partition_of_event(_other(chat=None), partitions)


def _message(chat: ChatKey, wamid: str) -> MessageEvent:
    return MessageEvent(
        idempotency_key=wamid,
        chat=chat,
        message_id=wamid,
        type=MessageType.TEXT,
        content=TextContent(body="hi"),
    )


def _other(chat: ChatKey | None) -> OtherEvent:
    return OtherEvent(idempotency_key="other:abc", chat=chat, field="account_update", raw={})


def test_events_go_to_their_chats_partition_status_events_too() -> None:
    partitions = 32
    for n in range(50):
        chat = ChatKey(phone_number_id="123456789", user=f"1555000{n:04d}")
        status = StatusEvent(
            idempotency_key=f"wamid.out{n}:read",
            chat=chat,
            message_id=f"wamid.out{n}",
            status=StatusValue.READ,
        )
        expected = partition_for(chat, partitions)
        assert partition_of_event(_message(chat, f"wamid.in{n}"), partitions) == expected
        assert partition_of_event(status, partitions) == expected
        assert partition_of_event(_other(chat), partitions) == expected


def test_events_without_a_chat_go_to_partition_zero() -> None:
    assert NO_CHAT_PARTITION == 0
    assert partition_of_event(_other(chat=None), 8) == 0
