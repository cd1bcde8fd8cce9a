"""A job's glossary: terms the speaker uses, spelled as they should be written.

The terms guide the transcription (Whisper's initial prompt, OpenAI's ``prompt``), and
:func:`respell` writes them in the glossary's spelling wherever the transcript has them in another
case, with other hyphens or spaces, or misheard by a letter or two ("right-ahead" for "write-ahead").
"""

from __future__ import annotations

import os
import re
from difflib import SequenceMatcher
from functools import cache

#: How alike a misheard word must be to a term's word (difflib ratio) to be respelled.
WORD_SIMILARITY = 0.78
#: How alike the one differing word of a longer term must be (the others exact).
LOOSE_SIMILARITY = 0.5
#: Terms shorter than this (letters) are only respelled when they match exactly, apart from case.
MIN_FUZZY_LETTERS = 7


def prompt(glossary: list[str] | None) -> str | None:
    """The transcription prompt for ``glossary``, or None: the terms inside punctuated sentences, as a
    lecture would say them, since Whisper writes in its prompt's style (a bare list made it write run-on
    sentences joined by commas; its ``hotwords`` option dropped punctuation altogether)."""
    terms = [t.strip() for t in glossary or [] if t.strip()]
    if not terms:
        return None
    return "Hello, everyone. In this lecture, we will use these terms: " + ", ".join(terms) + ". Let's begin."


def _cased(found: str, term: str) -> str:
    """``term``, capitalised when it is all lower case and ``found`` began a sentence with a capital."""
    return term[:1].upper() + term[1:] if term.islower() and found[:1].isupper() else term


def _letters(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


@cache
def _exact(term: str) -> re.Pattern[str]:
    # The term's words with any of space, hyphen or nothing between them, whole words, any case.
    parts = [re.escape(p) for p in re.split(r"[\s-]+", term.strip()) if p]
    return re.compile(r"(?<![\w-])" + r"[\s-]?".join(parts) + r"(?![\w-])", re.I)


@cache
def _split(term: str) -> re.Pattern[str]:
    # A one-word term heard as two words: "photo synthesis" for "photosynthesis".
    letters = _letters(term)
    if " " in term.strip() or len(letters) < MIN_FUZZY_LETTERS:
        return re.compile(r"(?!x)x")
    cuts = "|".join(re.escape(letters[:i]) + r"[\s-]" + re.escape(letters[i:]) for i in range(3, len(letters) - 2))
    return re.compile(r"(?<![\w-])(?:" + cuts + r")(?![\w-])", re.I)


_WORD = re.compile(r"[\w'’]+")


def _another_form(found: str, wanted: str) -> bool:
    """Whether two words share a stem and differ in their endings only: another form of the same word
    ("mitochondrion" for "mitochondria"), not a mishearing. A letter dropped or doubled inside the word,
    with the same ending ("belman" for "bellman"), is a misspelling, not another form."""
    stem = len(os.path.commonprefix([found, wanted]))
    if stem < min(len(found), len(wanted)) - 3:
        return False
    ending = len(os.path.commonprefix([found[stem:][::-1], wanted[stem:][::-1]]))
    return ending < 2


def _alike(found: str, wanted: str, ratio: float = 0.0) -> bool:
    if found == wanted:
        return True
    if len(wanted) < 4 or abs(len(found) - len(wanted)) > 2:
        return False
    if _another_form(found, wanted):
        return False
    return SequenceMatcher(None, found, wanted).ratio() >= (ratio or WORD_SIMILARITY)


def _matches(words: list[str], wanted: list[str]) -> bool:
    """Whether ``words`` are ``wanted`` misheard: each word close to the term's, or, in a term of three
    words or more, one word loosely alike while every other is exact ("right-ahead log")."""
    if words == wanted:
        return False
    if len(wanted) == 1:
        return _alike(words[0], wanted[0])
    exact = sum(a == b for a, b in zip(words, wanted, strict=True))
    if exact == 0:
        return False
    if all(map(_alike, words, wanted)):
        return True
    return len(wanted) >= 3 and exact == len(wanted) - 1 and all(
        _alike(a, b, LOOSE_SIMILARITY) for a, b in zip(words, wanted, strict=True))


def respell(text: str, glossary: list[str] | None) -> str:
    """``text`` with every glossary term written as the glossary writes it.

    A term matches in any case and with spaces, hyphens or nothing between its words; a term of
    :data:`MIN_FUZZY_LETTERS` letters or more also matches a run of as many words, in one clause,
    whose every word is the term's word or close to it ("right-ahead log" for "write-ahead log").
    """
    if not text or not glossary:
        return text
    for term in sorted({t.strip() for t in glossary if t.strip()}, key=len, reverse=True):
        def written(match: re.Match[str], term: str = term) -> str:
            return _cased(match.group(), term)

        text = _exact(term).sub(written, text)
        text = _split(term).sub(written, text)
        wanted = [w.lower() for w in _WORD.findall(term)]
        if len(_letters(term)) < MIN_FUZZY_LETTERS or not wanted:
            continue
        tokens = list(_WORD.finditer(text))
        pieces: list[str] = []
        last = index = 0
        while index + len(wanted) <= len(tokens):
            window = tokens[index : index + len(wanted)]
            span = text[window[0].start() : window[-1].end()]
            gaps_ok = all(re.fullmatch(r"[\s-]*", text[a.end() : b.start()])
                          for a, b in zip(window, window[1:], strict=False))
            words = [m.group().lower() for m in window]
            if span != term and gaps_ok and _matches(words, wanted):
                pieces += [text[last : window[0].start()], _cased(span, term)]
                last = window[-1].end()
                index += len(wanted)
            else:
                index += 1
        text = "".join(pieces) + text[last:]
    return text
