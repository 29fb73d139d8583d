"""Splitting replies into WhatsApp-sized parts: within the limit, on natural boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whatsray.agents.replies import MAX_PART_CHARS, split_reply, text_units


def _words(text: str) -> list[str]:
    return text.split()


def test_short_reply_is_one_stripped_part() -> None:
    assert split_reply("  Hello there!\n") == ("Hello there!",)


@pytest.mark.parametrize("blank", ["", "   ", "\n\n\t"])
def test_blank_reply_has_no_parts(blank: str) -> None:
    assert split_reply(blank) == ()


def test_whatsapp_limit_is_4096() -> None:
    assert MAX_PART_CHARS == 4096
    exact = "a" * 4096
    assert split_reply(exact) == (exact,)
    assert [len(p) for p in split_reply(exact + "b")] == [4096, 1]


def test_long_reply_splits_on_paragraphs() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 300 for i in range(10)]  # ~1,500 chars each
    text = "\n\n".join(p.strip() for p in paragraphs)
    parts = split_reply(text)
    assert len(parts) > 1
    assert all(0 < len(p) <= 4096 for p in parts)
    # every part starts at a paragraph start: nothing was cut mid-paragraph
    assert all(p.startswith("Paragraph ") for p in parts)
    assert _words(" ".join(parts)) == _words(text)


def test_one_huge_paragraph_splits_on_sentences() -> None:
    sentences = [f"Sentence number {i} says something useful." for i in range(300)]
    text = " ".join(sentences)  # ~12,000 chars, no newline
    parts = split_reply(text, limit=1000)
    assert len(parts) >= 12
    assert all(len(p) <= 1000 and p.endswith(".") for p in parts)
    assert _words(" ".join(parts)) == _words(text)


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    url = "https://example.com/" + "x" * 250
    parts = split_reply(f"See {url} now", limit=100)
    assert all(len(p) <= 100 for p in parts)
    assert "".join(parts).replace(" ", "") == f"See{url}now"


def test_emoji_count_as_two_units_and_are_never_cut() -> None:
    text = "😀" * 10
    assert text_units(text) == 20
    parts = split_reply(text, limit=5)
    assert parts == ("😀😀", "😀😀", "😀😀", "😀😀", "😀😀")


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_reply("x", limit=0)


@settings(max_examples=150, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("ab .!?\n😀é")), max_size=400),
    st.integers(min_value=2, max_value=60),
)
def test_parts_always_fit_are_never_blank_and_keep_the_text(text: str, limit: int) -> None:
    parts = split_reply(text, limit=limit)
    assert all(0 < text_units(p) <= limit for p in parts)
    assert all(p == p.strip() and p for p in parts)
    # No visible character is lost, added or reordered.
    assert "".join("".join(p.split()) for p in parts) == "".join(text.split())
