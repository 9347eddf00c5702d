"""Measures of the text the model writes against the texts a person wrote: pure functions of strings.

The evaluation (`training.evaluate`) applies them to summaries and apology drafts.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from lingua import Language, LanguageDetector, LanguageDetectorBuilder
from sacrebleu.metrics import CHRF

from pipeline.contracts import TextScores, WorstReply

# The customers' languages. Restricting lingua to them makes it faster and keeps it from reading a short English
# reply as, say, Dutch.
LANGUAGES = {Language.ENGLISH: "en", Language.KOREAN: "ko"}
# The languages whose length is counted in characters: Korean packs a phrase into one space-separated word.
COUNTED_IN_CHARACTERS = {"ko"}
UNDETERMINED = "und"
RUN_WORDS = 6
WORST = 5


class Written(NamedTuple):
    """One row's text: what the model wrote (None if it wrote nothing) beside the reference."""

    id: str
    chat: str
    reference: str
    text: str | None
    key_terms: Sequence[str] = ()
    chat_language: str | None = None


def corpus_chrf(texts: Sequence[str], references: Sequence[str]) -> float | None:
    """Corpus-level chrF (sacrebleu's defaults: character 6-grams, beta 2), 0-100; None without texts."""
    if not texts:
        return None
    return round(CHRF().corpus_score(list(texts), [list(references)]).score, 2)


def sentence_chrf(text: str, reference: str) -> float:
    return round(CHRF().sentence_score(text, [reference]).score, 2)


def names_problem(text: str, key_terms: Iterable[str]) -> bool:
    """Whether the text contains any of the key terms, ignoring case."""
    folded = text.casefold()
    return any(term.casefold() in folded for term in key_terms)


@functools.cache
def _detector() -> LanguageDetector:
    # Built once: lingua loads its language models on the first detection.
    return LanguageDetectorBuilder.from_languages(*LANGUAGES).build()


def language_of(text: str) -> str | None:
    """The ISO 639-1 code of the text's language among `LANGUAGES`, or None when lingua cannot tell."""
    language = _detector().detect_language_of(text)
    return LANGUAGES.get(language)


def in_language(text: str, language: str | None) -> bool:
    """Whether lingua finds the text in `language`; never when that language is unknown."""
    return language is not None and language_of(text) == language


def _words(text: str) -> list[str]:
    # Case and punctuation aside (apostrophes within a word kept, straight or curly: "i'm"), so that a copied
    # sentence counts as one run however it is written.
    return re.findall(r"\w+(?:['\u2019]\w+)*", text.casefold())


def common_run(texts: Sequence[str], words: int = RUN_WORDS) -> tuple[str | None, float]:
    """The run of `words` words that the most texts contain (each text counted once), and the share of texts that
    contain it; `(None, 0.0)` when no text has that many words."""
    counts = Counter()
    for text in texts:
        tokens = _words(text)
        # Once per text, in order: among runs that as many texts share, the first one met is reported.
        counts.update(dict.fromkeys((" ".join(tokens[i:i + words]) for i in range(len(tokens) - words + 1)), 1))
    if not counts:
        return None, 0.0
    run, count = counts.most_common(1)[0]
    return run, round(count / len(texts), 4)


def length(text: str, language: str | None) -> int:
    """Words, or for a language in `COUNTED_IN_CHARACTERS` characters other than spaces."""
    if language in COUNTED_IN_CHARACTERS:
        return len(re.sub(r"\s", "", text))
    return len(text.split())


def mean_lengths(texts: Iterable[str]) -> dict[str, float]:
    """Mean `length` of the texts by the language lingua finds in each (`und` when it finds none)."""
    by_language: dict[str, list[int]] = {}
    for text in texts:
        language = language_of(text)
        by_language.setdefault(language or UNDETERMINED, []).append(length(text, language))
    return {language: round(sum(counts) / len(counts), 1) for language, counts in sorted(by_language.items())}


def share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def score_texts(rows: Sequence[Written]) -> TextScores:
    """All the measures of one kind of text over the rows that have a reference for it."""
    written = [row for row in rows if row.text is not None]
    texts = [row.text for row in written]
    run, run_share = common_run(texts)
    return TextScores(
        references=len(rows),
        written=len(written),
        chrf=corpus_chrf(texts, [row.reference for row in written]),
        names_problem=share([names_problem(row.text, row.key_terms) for row in written if row.key_terms]),
        in_chat_language=share([in_language(row.text, _chat_language(row)) for row in written]),
        boilerplate_share=run_share if written else None,
        boilerplate_run=run,
        mean_length=mean_lengths(texts),
    )


def _chat_language(row: Written) -> str | None:
    return row.chat_language or language_of(row.chat)


def worst(rows: Sequence[Written], count: int = WORST) -> list[WorstReply]:
    """The `count` written texts with the lowest sentence-level chrF, worst first (file order among equals)."""
    scored = [
        WorstReply(id=row.id, chat=row.chat, reference=row.reference, draft=row.text,
                   chrf=sentence_chrf(row.text, row.reference))
        for row in rows if row.text is not None
    ]
    return sorted(scored, key=lambda reply: reply.chrf)[:count]
