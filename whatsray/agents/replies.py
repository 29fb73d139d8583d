"""Reply texts the agents send without asking a model, and splitting long replies into parts.

WhatsApp refuses a text body over 4,096 characters, and an empty one. `split_reply` cuts a long
reply on the most natural boundary that fits (paragraph, then line, then sentence, then word) and
never produces an empty part. Lengths are counted in UTF-16 code units, which is never less than
Python's `len`: a part that fits here fits Meta's limit however Meta counts an emoji.
"""

from __future__ import annotations

import re

from whatsray.whatsapp.limits import MAX_TEXT_BODY_CHARS

__all__ = [
    "DEFAULT_APOLOGY",
    "DEFAULT_EMPTY_REPLY",
    "DEFAULT_UNKNOWN_REPLY",
    "MAX_PART_CHARS",
    "split_reply",
    "text_units",
]

MAX_PART_CHARS = MAX_TEXT_BODY_CHARS

DEFAULT_APOLOGY = (
    "Sorry, I can't answer right now because of a problem on our side. "
    "Please try again in a few minutes."
)
DEFAULT_EMPTY_REPLY = "Sorry, I don't have an answer to that. Could you rephrase your question?"
DEFAULT_UNKNOWN_REPLY = (
    "I'm sorry, I don't know the answer to that. "
    "A person from our team will follow up with you here."
)

# Boundaries, coarsest first. Each keeps its separator at the end of the piece before it.
_PARAGRAPHS = re.compile(r"(?<=\n\n)")
_LINES = re.compile(r"(?<=\n)")
_SENTENCES = re.compile(r"(?<=[.!?…])\s+")
_WORDS = re.compile(r"(?<=\s)")


def text_units(text: str) -> int:
    """The length of `text` in UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def split_reply(text: str, limit: int = MAX_PART_CHARS) -> tuple[str, ...]:
    """`text` as parts of at most `limit` units, in order, none empty or only whitespace.

    Parts are stripped of leading and trailing whitespace. Returns `()` for a blank text: the caller
    decides what to send instead.
    """
    if limit < 1:
        raise ValueError("limit must be >= 1")
    stripped = text.strip()
    if not stripped:
        return ()
    if text_units(stripped) <= limit:
        return (stripped,)
    parts = [p.strip() for p in _pack(_pieces(stripped, limit, 0), limit)]
    return tuple(p for p in parts if p)


_SPLITTERS = (_PARAGRAPHS, _LINES, _SENTENCES, _WORDS)


def _pieces(text: str, limit: int, level: int) -> list[str]:
    """`text` cut into pieces that each fit `limit`, on the boundary at `level` or finer ones."""
    if text_units(text) <= limit:
        return [text]
    if level >= len(_SPLITTERS):
        return _hard_cut(text, limit)
    splitter = _SPLITTERS[level]
    if splitter is _SENTENCES:
        # Keep the whitespace after a sentence with it, so joining pieces gives back the text.
        chunks = _split_keeping(text, splitter)
    else:
        chunks = [c for c in splitter.split(text) if c]
    if len(chunks) <= 1:
        return _pieces(text, limit, level + 1)
    out: list[str] = []
    for chunk in chunks:
        out.extend(_pieces(chunk, limit, level + 1))
    return out


def _split_keeping(text: str, pattern: re.Pattern[str]) -> list[str]:
    chunks: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        chunks.append(text[start : match.end()])
        start = match.end()
    chunks.append(text[start:])
    return [c for c in chunks if c]


def _hard_cut(text: str, limit: int) -> list[str]:
    """A text with no boundary that fits (a long URL...): cut by units, never inside a character."""
    out: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:
        size = 2 if ord(ch) > 0xFFFF else 1
        if used + size > limit and current:
            out.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += size
    if current:
        out.append("".join(current))
    return out


def _pack(pieces: list[str], limit: int) -> list[str]:
    """Join consecutive pieces greedily into parts of at most `limit` units."""
    parts: list[str] = []
    current = ""
    for piece in pieces:
        if current and text_units(current) + text_units(piece) > limit:
            parts.append(current)
            current = ""
        current += piece
    if current:
        parts.append(current)
    return parts
