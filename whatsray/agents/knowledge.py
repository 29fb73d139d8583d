"""The FAQ agent's knowledge: a file of questions and answers, and a small lexical retriever.

No ML dependency on purpose: retrieval must be deterministic (the FAQ agent answers a fixed "I
don't know" when nothing relevant is found, without asking the model), fast, and free of model
downloads. Scoring is BM25 over lightly stemmed words, with the question and its keywords counted
twice. See docs/agents.md, "The FAQ agent", for the file format.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

__all__ = [
    "DEFAULT_MIN_SCORE",
    "KnowledgeBase",
    "KnowledgeEntry",
    "KnowledgeError",
    "KnowledgeMatch",
    "tokenize",
]

DEFAULT_MIN_SCORE = 1.5  # below it an entry is not relevant enough to hand to the model
_RELATIVE_CUTOFF = 0.4  # keep only matches at least this fraction of the best one
_MIN_CORPUS = 10  # idf as if there were at least this many entries (see `KnowledgeBase`)
_K1 = 1.2
_B = 0.75

# Question words and fillers: they say nothing about which entry is meant.
_STOPWORD_TEXT = """
a about above after again all also am an and any anyone are as at be because been before being
below between both but by can could did do does doing down during each else ever few for from
further get got had has have having he her here hers him his how i if in into is it its just know
let like me mine more most much my need no nor not now of off on once only or other our ours out
over own please same she should so some such tell than thank thanks that the their them then
there these they this those through to too under until up us very want was we were what which
while whom will with would yes you your yours hi hello hey ok okay there's what's i'm it's can't
don't
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_LETTER_PREFIX = re.compile(r"\b([a-z])-(?=[a-z])")  # e-bike -> ebike, t-shirt -> tshirt
_KEYWORDS_LINE = re.compile(r"^\s*(?:keywords|tags)\s*:\s*(.*)$", re.IGNORECASE)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


class KnowledgeError(ValueError):
    """A knowledge file that cannot be used (missing, unreadable, no entries)."""


@dataclass(frozen=True, slots=True)
class KnowledgeEntry:
    """One question and its answer. `keywords` are extra words that should find it."""

    id: str
    question: str
    answer: str
    section: str | None = None
    keywords: tuple[str, ...] = ()

    def as_context(self) -> str:
        """The entry as the model sees it in the prompt."""
        head = f"[{self.id}] Q: {self.question}"
        if self.section and self.section != self.question:
            head = f"[{self.id}] ({self.section}) Q: {self.question}"
        return f"{head}\nA: {self.answer}"


@dataclass(frozen=True, slots=True)
class KnowledgeMatch:
    entry: KnowledgeEntry
    score: float


def _fold(text: str) -> str:
    """Lower case without accents: `Crème` and `creme` are the same word."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace("\u2019", "'")


def _stem(word: str) -> str:
    """A crude, consistent stemmer: `opening`, `opens`, `opened` -> `open`; `prices` -> `pric`."""
    if word.endswith("'s"):
        word = word[:-2]
    word = word.replace("'", "")
    if len(word) <= 3 or word.isdigit():
        return word
    stripped = True
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    elif word.endswith(("ed", "es")) and len(word) > 4:
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    elif word.endswith("ly") and len(word) > 5:
        word = word[:-2]
    else:
        stripped = False
    if stripped and len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]  # shipping -> shipp -> ship
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """The stemmed content words of `text`, in order (stop words dropped)."""
    words = _WORD.findall(_LETTER_PREFIX.sub(r"\1", _fold(text)))
    return [_stem(w) for w in words if w not in _STOPWORDS]


def _slug(text: str) -> str:
    words = _WORD.findall(_fold(text))
    return "-".join(w.replace("'", "") for w in words)[:60].strip("-") or "entry"


class KnowledgeBase:
    """Entries plus their BM25 index. Immutable once built; safe to share between turns."""

    def __init__(self, entries: Sequence[KnowledgeEntry], *, source: str | None = None) -> None:
        if not entries:
            raise KnowledgeError(f"{source or 'knowledge'}: no question/answer entries found")
        self._entries = tuple(entries)
        self.source = source
        self._docs = [Counter(self._doc_tokens(e)) for e in self._entries]
        lengths = [sum(d.values()) for d in self._docs]
        self._lengths = lengths
        self._avg_length = sum(lengths) / len(lengths) or 1.0
        frequency: Counter[str] = Counter()
        for doc in self._docs:
            frequency.update(doc.keys())
        # A tiny FAQ would give every word a tiny idf and never pass `min_score`: count it as a
        # sample of a larger one, so thresholds mean the same for 3 entries and for 30.
        n = max(len(self._docs), _MIN_CORPUS)
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in frequency.items()}

    @staticmethod
    def _doc_tokens(entry: KnowledgeEntry) -> list[str]:
        question = tokenize(entry.question)
        keywords = tokenize(" ".join(entry.keywords))
        section = tokenize(entry.section or "")
        return question * 2 + keywords * 2 + section + tokenize(entry.answer)

    @property
    def entries(self) -> tuple[KnowledgeEntry, ...]:
        return self._entries

    def search(
        self, query: str, *, top_k: int = 3, min_score: float = DEFAULT_MIN_SCORE
    ) -> tuple[KnowledgeMatch, ...]:
        """The best entries for `query`, best first: at most `top_k`, none below `min_score`."""
        terms = set(tokenize(query))
        if not terms or top_k < 1:
            return ()
        scored = []
        for entry, doc, length in zip(self._entries, self._docs, self._lengths, strict=True):
            score = 0.0
            for term in terms:
                tf = doc.get(term, 0)
                if tf:
                    norm = tf + _K1 * (1 - _B + _B * length / self._avg_length)
                    score += self._idf[term] * tf * (_K1 + 1) / norm
            if score >= min_score:
                scored.append(KnowledgeMatch(entry, round(score, 4)))
        if not scored:
            return ()
        scored.sort(key=lambda m: -m.score)  # stable: ties keep file order
        best = scored[0].score
        return tuple(m for m in scored[:top_k] if m.score >= best * _RELATIVE_CUTOFF)

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> KnowledgeBase:
        """From a `.md` file (headings are questions) or a `.yaml`/`.yml` file (a list)."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise KnowledgeError(f"{file}: cannot read the knowledge file ({exc})") from None
        if file.suffix.lower() in (".yaml", ".yml"):
            return cls.from_yaml(text, source=str(file))
        return cls.from_markdown(text, source=str(file))

    @classmethod
    def from_markdown(cls, text: str, *, source: str | None = None) -> KnowledgeBase:
        """`##` headings are sections, `###` headings are questions, the text under one its answer.

        A `##` heading with text directly under it is an entry too. A `Keywords: a, b` line adds
        search words to its entry and is not part of the answer. `#` titles and comments are
        ignored.
        """
        entries: list[tuple[str, str | None, list[str], list[str]]] = []
        section: str | None = None
        current: tuple[str, str | None, list[str], list[str]] | None = None
        for line in _COMMENT.sub("", text).splitlines():
            heading = _HEADING.match(line)
            if heading:
                level, title = len(heading.group(1)), heading.group(2).strip()
                current = None
                if level == 1 or not title:
                    section = None
                    continue
                if level == 2:
                    section = title
                current = (title, section, [], [])
                entries.append(current)
                continue
            if current is None:
                continue
            keywords = _KEYWORDS_LINE.match(line)
            if keywords:
                current[3].extend(k.strip() for k in keywords.group(1).split(",") if k.strip())
            else:
                current[2].append(line)
        built = [
            (question, sec, "\n".join(body).strip(), keywords)
            for question, sec, body, keywords in entries
        ]
        return cls(_with_ids((q, s, a, k) for q, s, a, k in built if a), source=source)

    @classmethod
    def from_yaml(cls, text: str, *, source: str | None = None) -> KnowledgeBase:
        """A list of `{question, answer, keywords?, section?}`, or `{entries: [...]}`."""
        where = source or "knowledge"
        try:
            data: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise KnowledgeError(f"{where}: not valid YAML ({exc})") from None
        if isinstance(data, dict):
            data = data.get("entries")
        if not isinstance(data, list):
            raise KnowledgeError(f"{where}: expected a list of entries (or `entries:`)")
        rows = []
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise KnowledgeError(f"{where}: entry {index} is not a mapping")
            question, answer = item.get("question"), item.get("answer")
            if not isinstance(question, str) or not isinstance(answer, str):
                raise KnowledgeError(f"{where}: entry {index} needs `question` and `answer` texts")
            keywords = item.get("keywords") or []
            if isinstance(keywords, str):
                keywords = [k.strip() for k in keywords.split(",")]
            section = item.get("section")
            rows.append(
                (
                    question.strip(),
                    section if isinstance(section, str) else None,
                    answer.strip(),
                    [str(k) for k in keywords if str(k).strip()],
                )
            )
        return cls(_with_ids(rows), source=source)


def _with_ids(
    rows: Iterable[tuple[str, str | None, str, list[str]]],
) -> list[KnowledgeEntry]:
    """Entries with ids from their questions, made unique with `-2`, `-3`..."""
    seen: Counter[str] = Counter()
    out = []
    for question, section, answer, keywords in rows:
        base = _slug(question)
        seen[base] += 1
        entry_id = base if seen[base] == 1 else f"{base}-{seen[base]}"
        out.append(KnowledgeEntry(entry_id, question, answer, section, tuple(keywords)))
    return out
