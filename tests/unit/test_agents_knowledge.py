"""The FAQ knowledge file: parsing (markdown and YAML) and deterministic lexical retrieval."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from whatsray.agents.knowledge import KnowledgeBase, KnowledgeError, tokenize

SHIPPED_FAQ = Path(__file__).resolve().parents[2] / "configs" / "knowledge" / "faq.md"

SMALL_FAQ = """# Demo bakery

<!-- an editor's note that is not an entry -->

Intro text under the title is ignored.

## Opening hours
Every day 7:00 to 14:00.
Keywords: open, close, sunday

## Orders

### Can I order a birthday cake?
Yes, three days ahead, from 35 EUR.
Keywords: cake, birthday, custom

### Can I order a birthday cake?
A second entry with the same question gets its own id.

### Empty question with no answer
"""


@pytest.fixture(scope="module")
def shipped() -> KnowledgeBase:
    return KnowledgeBase.load(SHIPPED_FAQ)


def test_markdown_entries_sections_keywords_and_ids() -> None:
    kb = KnowledgeBase.from_markdown(SMALL_FAQ, source="demo.md")
    assert [e.id for e in kb.entries] == [
        "opening-hours",
        "can-i-order-a-birthday-cake",
        "can-i-order-a-birthday-cake-2",
    ]
    hours, cake, _ = kb.entries
    assert hours.answer == "Every day 7:00 to 14:00."  # the Keywords line is not answer text
    assert hours.keywords == ("open", "close", "sunday")
    assert cake.section == "Orders"
    assert cake.question == "Can I order a birthday cake?"
    assert cake.as_context() == (
        "[can-i-order-a-birthday-cake] (Orders) Q: Can I order a birthday cake?\n"
        "A: Yes, three days ahead, from 35 EUR."
    )


def test_yaml_entries(tmp_path: Path) -> None:
    file = tmp_path / "faq.yaml"
    file.write_text(
        """
entries:
  - question: Do you deliver?
    answer: Yes, within 5 km.
    keywords: delivery, courier
  - question: Are you vegan friendly?
    answer: Half of our cakes are vegan.
    section: Food
""",
        encoding="utf-8",
    )
    kb = KnowledgeBase.load(file)
    assert [e.id for e in kb.entries] == ["do-you-deliver", "are-you-vegan-friendly"]
    assert kb.entries[0].keywords == ("delivery", "courier")
    assert kb.entries[1].section == "Food"
    assert kb.search("courier please")[0].entry.id == "do-you-deliver"


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("# Only a title\n", ".md", "no question/answer entries"),
        ("- question: q\n", ".yaml", "needs `question` and `answer`"),
        ("just a string", ".yaml", "expected a list of entries"),
        ("[unclosed", ".yaml", "not valid YAML"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, suffix: str, message: str) -> None:
    file = tmp_path / f"kb{suffix}"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(KnowledgeError, match=message):
        KnowledgeBase.load(file)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="cannot read"):
        KnowledgeBase.load(tmp_path / "none.md")


def test_tokenize_stems_word_forms_alike() -> None:
    assert tokenize("opening opens opened") == ["open", "open", "open"]
    assert tokenize("Deliveries delivery") == ["delivery", "delivery"]
    assert tokenize("E-bikes ebike") == ["ebik", "ebik"]
    assert tokenize("shipping ships") == ["ship", "ship"]
    assert tokenize("Crème brûlée") == tokenize("creme brulee")
    assert tokenize("what is it") == []


@pytest.mark.parametrize(
    ("question", "entry"),
    [
        ("What time do you open on Saturday?", "when-are-you-open"),
        ("where are you?", "where-is-the-shop"),
        ("how much is a full service", "how-much-does-a-service-cost"),
        ("Do you fix e-bikes?", "do-you-repair-bikes-and-how-long-does-it-take"),
        ("do you deliver to Potsdam", "do-you-deliver"),
        ("I want my money back", "can-i-return-something"),
        ("Can I pay with Apple Pay?", "which-payment-methods-do-you-accept"),
        ("I'd like to rent a cargo bike for the weekend", "do-you-rent-bikes"),
    ],
)
def test_shipped_faq_finds_the_right_entry_first(
    shipped: KnowledgeBase, question: str, entry: str
) -> None:
    matches = shipped.search(question)
    assert matches, question
    assert matches[0].entry.id == entry
    assert all(a.score >= b.score for a, b in itertools.pairwise(matches))


@pytest.mark.parametrize(
    "question",
    [
        "What's the capital of France?",
        "Who won the football game yesterday?",
        "Can you write me a poem about bikes?",
        "hello!",
        "",
    ],
)
def test_shipped_faq_finds_nothing_for_unrelated_questions(
    shipped: KnowledgeBase, question: str
) -> None:
    assert shipped.search(question) == ()


def test_top_k_and_min_score(shipped: KnowledgeBase) -> None:
    question = "repair price and appointment"
    assert len(shipped.search(question, top_k=1)) == 1
    everything = shipped.search(question, top_k=20, min_score=0.0)
    assert len(everything) >= 2
    assert shipped.search(question, min_score=everything[0].score + 1) == ()
    assert shipped.search(question, top_k=0) == ()
