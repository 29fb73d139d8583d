"""The router's trained stage: a small text classifier learnt at load from the agents' `examples`
and descriptions (docs/router.md, "The trained stage").

Character n-grams (2 to 5 letters inside word boundaries) and words and word pairs, each block
TF-IDF weighted, feed a multinomial logistic regression (scikit-learn). Character n-grams carry
across typos ("adress"), inflections and compound words ("Fahrradreparatur"), words and pairs
carry phrasing ("do you", "my order"), so a few dozen examples per agent are enough, in several
languages at once. Text is normalised first (`whatsray.agents.examples.normalise`: accents
stripped, case folded), so "Öffnungszeiten" and "offnungszeiten" are the same text.

Training takes milliseconds and is deterministic (lbfgs, fixed `random_state`); models are cached
by their training data, so the session hosts, the router actor and tests that build many routers
train each distinct model once per process. Prediction is done here with the fitted weights
(vocabulary lookup, one sparse dot product, softmax): over ten times faster than scikit-learn's
pipeline for a single message, and the same probabilities.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from whatsray.agents.examples import normalise

__all__ = ["IntentGuess", "IntentModel", "train_intent_model"]

_CHAR_NGRAMS = (2, 5)
_TOKEN = re.compile(r"(?u)\b\w+\b")  # words of one letter too ("u", "i")
_C = 10.0  # inverse regularisation: few examples, many features; measured in docs/router.md
_MAX_INPUT_CHARS = 1000  # the newest text, like the LLM classifier


@dataclass(frozen=True, slots=True)
class IntentGuess:
    """The trained stage's answer for one text: the likeliest agent, its probability, and every
    agent's probability, likeliest first."""

    agent: str
    confidence: float
    ranking: tuple[tuple[str, float], ...]

    def detail(self, top: int = 2) -> str:
        """`faq 0.83, support 0.11`: what `RouteDecision.detail` shows."""
        return ", ".join(f"{name} {p:.2f}" for name, p in self.ranking[:top])


class IntentModel:
    """A fitted model: `predict(text)` gives an `IntentGuess`. Build with `train_intent_model`.

    `blocks` are the feature blocks (character n-grams, words), each a vocabulary (n-gram to
    column) and its idf weights; `coef` has one row per agent over all blocks' columns."""

    def __init__(
        self,
        names: Sequence[str],
        blocks: Sequence[tuple[Mapping[str, int], Sequence[float]]],
        coef: Sequence[Sequence[float]],
        intercept: Sequence[float],
    ) -> None:
        self.names = tuple(names)
        self._blocks = tuple((dict(vocabulary), tuple(idf)) for vocabulary, idf in blocks)
        self._coef = np.asarray(coef, dtype=np.float64)  # agents x features
        self._intercept = np.asarray(intercept, dtype=np.float64)

    @property
    def features(self) -> int:
        return sum(len(vocabulary) for vocabulary, _ in self._blocks)

    def predict(self, text: str) -> IntentGuess | None:
        """The guess for a text, or None when the text has no known n-gram (an emoji alone,
        another script): then nothing was learnt that applies, and the stage does not decide."""
        clean = normalise(text[-_MAX_INPUT_CHARS:])
        columns: list[int] = []
        values: list[float] = []
        offset = 0
        for (vocabulary, idf), analyzer in zip(self._blocks, _ANALYZERS, strict=True):
            counts: dict[int, int] = {}
            for gram in analyzer(clean):
                index = vocabulary.get(gram)
                if index is not None:
                    counts[index] = counts.get(index, 0) + 1
            # TF-IDF as the vectorizer computes it: sublinear tf, idf, L2 norm per block.
            block = [(i, (1.0 + math.log(n)) * idf[i]) for i, n in counts.items()]
            norm = math.sqrt(sum(w * w for _, w in block)) or 1.0
            columns.extend(offset + i for i, _ in block)
            values.extend(w / norm for _, w in block)
            offset += len(vocabulary)
        if not columns:
            return None
        scores = self._coef[:, columns] @ np.asarray(values) + self._intercept
        exps = np.exp(scores - scores.max())
        probabilities = (exps / exps.sum()).tolist()
        ranking = sorted(
            zip(self.names, probabilities, strict=True),
            key=lambda pair: (-pair[1], self.names.index(pair[0])),
        )
        return IntentGuess(ranking[0][0], ranking[0][1], tuple(ranking))


def _char_wb_ngrams(text: str) -> list[str]:
    """scikit-learn's `char_wb` analyzer: n-grams inside each word padded with one space."""
    grams: list[str] = []
    low, high = _CHAR_NGRAMS
    for word in text.split():
        padded = f" {word} "
        length = len(padded)
        for n in range(low, high + 1):
            if n > length:
                break
            grams.extend(padded[i : i + n] for i in range(length - n + 1))
    return grams


def _word_ngrams(text: str) -> list[str]:
    """scikit-learn's `word` analyzer with `_TOKEN`: words, then pairs of adjacent words."""
    words = _TOKEN.findall(text)
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


_ANALYZERS = (_char_wb_ngrams, _word_ngrams)


def train_intent_model(samples: Mapping[str, Sequence[str]]) -> IntentModel:
    """Fit a model on `{agent: [texts...]}` (agents in routing order). At least two agents must
    have texts; the caller (the config's validation) makes sure of it."""
    key = tuple((name, tuple(texts)) for name, texts in samples.items())
    return _train(key)


@functools.lru_cache(maxsize=32)
def _train(samples: tuple[tuple[str, tuple[str, ...]], ...]) -> IntentModel:
    # scikit-learn is imported here: processes whose agents have no examples never load it.
    from scipy.sparse import hstack  # type: ignore[import-untyped]
    from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    names = [name for name, texts in samples if texts]
    texts = [text for _, group in samples for text in group]
    labels = [name for name, group in samples for _ in group]
    common: dict[str, Any] = {
        "preprocessor": normalise,
        "lowercase": False,
        "sublinear_tf": True,
    }
    vectorizers = [
        TfidfVectorizer(analyzer="char_wb", ngram_range=_CHAR_NGRAMS, **common),
        TfidfVectorizer(
            analyzer="word", ngram_range=(1, 2), token_pattern=_TOKEN.pattern, **common
        ),
    ]
    matrix = hstack([v.fit_transform(texts) for v in vectorizers]).tocsr()
    model: Any = LogisticRegression(C=_C, max_iter=3000, random_state=0)
    model.fit(matrix, labels)
    classes = [str(c) for c in model.classes_]
    coef = model.coef_.tolist()
    intercept = model.intercept_.tolist()
    if len(classes) == 2:  # binary: one row of weights, for classes_[1]; softmax of (0, z)
        coef = [[0.0] * len(coef[0]), coef[0]]  # is the sigmoid of z
        intercept = [0.0, intercept[0]]
    order = [classes.index(name) for name in names]
    blocks = [
        ({str(gram): int(i) for gram, i in v.vocabulary_.items()}, v.idf_.tolist())
        for v in vectorizers
    ]
    return IntentModel(names, blocks, [coef[i] for i in order], [intercept[i] for i in order])
