"""A chat's state as an idle session keeps it: packed, because a host keeps 100,000 of them.

`SessionState` (what `load_state` returns and `TurnRequest.history` is made of) holds one
`HistoryMessage` object and one float object per message: about 100 bytes each before the text,
and every one of them is an object the garbage collector walks on each full collection.
`ChatMemory` keeps the same content as a few flat values instead: all the texts as one UTF-8
`bytes` (a str object per text costs 49 to 80 bytes of header; one joined str would turn 4 bytes a
character for the whole window as soon as one message has an emoji), their lengths, roles and
timestamps in three more `bytes`, the ids in a tuple. None of these is an object the garbage
collector tracks (see `IdleSession` in session.py).
The `HistoryMessage`s are rebuilt for each turn (50 small objects, a few microseconds).
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import NamedTuple

from whatsray.session.state import HistoryMessage, Role, SessionState

__all__ = ["ChatMemory"]

_USER, _ASSISTANT = b"u"[0], b"a"[0]
_ROLE_OF: dict[int, Role] = {_USER: "user", _ASSISTANT: "assistant"}
_STAMP = struct.Struct("d")
_LENGTH = struct.Struct("I")


class ChatMemory(NamedTuple):
    """The content of a `SessionState`, packed (message i is `texts[i]`, `roles[i]`...)."""

    texts: bytes  # every text, UTF-8, one after the other
    lengths: bytes  # one packed uint32 per message: its text's length in `texts`
    ids: tuple[str | None, ...]  # the wamid of a user's message, else None
    roles: bytes  # b"u" or b"a" per message
    stamps: bytes  # one packed double (unix seconds) per message
    recent: tuple[str, ...]  # committed inbound event ids, newest last
    agent: str | None
    handoff: bool
    last_inbound_at: float | None
    summary: str | None

    @classmethod
    def of(cls, state: SessionState, history_limit: int, recent_limit: int) -> ChatMemory:
        state = state.bounded(history_limit, recent_limit)
        recent = state.recent_event_ids
        texts, lengths, ids, roles, stamps = _pack(state.history, {i: i for i in recent})
        return cls(
            texts, lengths, ids, roles, stamps, recent,
            state.agent, state.handoff, state.last_inbound_at, state.summary,
        )  # fmt: skip

    def history(self, without: Collection[str] = ()) -> tuple[HistoryMessage, ...]:
        """The window as `HistoryMessage`s, leaving out the messages whose id is in `without`."""
        texts = _texts(self.texts, self.lengths)
        messages = zip(texts, self.ids, self.roles, _unpack(self.stamps), strict=True)
        return tuple(
            HistoryMessage(_ROLE_OF[role], text, at, message_id)
            for text, message_id, role, at in messages
            if message_id is None or message_id not in without
        )

    def state(self) -> SessionState:
        return SessionState(
            history=self.history(),
            agent=self.agent,
            handoff=self.handoff,
            last_inbound_at=self.last_inbound_at,
            recent_event_ids=self.recent,
            summary=self.summary,
        )

    def after(
        self,
        *,
        messages: Sequence[HistoryMessage],
        event_ids: Iterable[str],
        history_limit: int,
        recent_limit: int,
        last_inbound_at: float | None = None,
        agent: str | None = None,
        handoff: bool | None = None,
    ) -> ChatMemory:
        """As `SessionState.after`; a message already in the window (same id) moves to the end.

        That is a user's message the store kept before its turn committed (it is in the history
        `load_state` returned, and comes back as an input): the window holds it once.
        """
        latest = self.last_inbound_at
        if last_inbound_at is not None and (latest is None or last_inbound_at > latest):
            latest = last_inbound_at
        recent = self.recent
        added_ids = tuple(event_ids)
        if added_ids:
            recent = (recent + added_ids)[-recent_limit:] if recent_limit > 0 else ()
        packed = self.texts, self.lengths, self.ids, self.roles, self.stamps
        if messages:
            shared = {i: i for i in recent}
            new = _pack(messages, shared)
            again = {i for i in new[2] if i is not None}.intersection(self.ids)
            old = self.history(without=again) if again else None
            if old is not None:  # rare: repack the window without them
                packed = _pack(old, shared)
            texts, lengths = packed[0] + new[0], packed[1] + new[1]
            ids, roles, stamps = packed[2] + new[2], packed[3] + new[3], packed[4] + new[4]
            extra = len(ids) - history_limit
            if extra > 0:
                dropped = sum(_lengths(lengths[: extra * 4]))
                texts, lengths = texts[dropped:], lengths[extra * 4 :]
                ids, roles, stamps = ids[extra:], roles[extra:], stamps[extra * 8 :]
            packed = texts, lengths, ids, roles, stamps
        return ChatMemory(
            *packed, recent,
            self.agent if agent is None else agent,
            self.handoff if handoff is None else handoff,
            latest, self.summary,
        )  # fmt: skip


_Packed = tuple[bytes, bytes, tuple[str | None, ...], bytes, bytes]


def _pack(messages: Iterable[HistoryMessage], shared: dict[str, str]) -> _Packed:
    """Flat columns of these messages; an id equal to one in `shared` reuses that string."""
    texts = bytearray()
    lengths = bytearray()
    ids: list[str | None] = []
    roles = bytearray()
    stamps = bytearray()
    for message in messages:
        text = message.text.encode("utf-8", "surrogatepass")
        texts += text
        lengths += _LENGTH.pack(len(text))
        message_id = message.message_id
        ids.append(None if message_id is None else shared.get(message_id, message_id))
        roles.append(_USER if message.role == "user" else _ASSISTANT)
        stamps += _STAMP.pack(message.at)
    return bytes(texts), bytes(lengths), tuple(ids), bytes(roles), bytes(stamps)


def _lengths(lengths: bytes) -> tuple[int, ...]:
    return struct.unpack(f"{len(lengths) // 4}I", lengths)


def _texts(texts: bytes, lengths: bytes) -> Iterator[str]:
    start = 0
    for length in _lengths(lengths):
        end = start + length
        yield texts[start:end].decode("utf-8", "surrogatepass")
        start = end


def _unpack(stamps: bytes) -> tuple[float, ...]:
    return struct.unpack(f"{len(stamps) // 8}d", stamps)
