"""Lecture notes from a transcript: local extractive notes, or OpenAI chat with a JSON-schema answer.

Notes are made per chunk (:func:`chunk_notes`) and merged into the lecture result (:func:`merge`):
``title``, ``summary``, ``sections`` [{``heading``, ``content``}], ``key_takeaways`` [..] and
``definitions`` [{``term``, ``definition``}]. The local provider only picks and trims sentences of
the transcript (TextRank over pysbd sentences, YAKE keyphrases for headings, patterns for
definitions), so everything it writes is drawn from what was said. No NLTK data is needed.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import numpy as np

from actors.errors import TransientError
from actors.providers import openai_client, pick

#: The chat model of the OpenAI provider.
OPENAI_CHAT_MODEL = "gpt-4o-mini"
SENTENCES_PER_SECTION = 6
MAX_TAKEAWAYS = 6
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
#: Words that name the occasion rather than the subject; never a heading or title.
_META = {"lecture", "lectures", "welcome", "today", "talk", "class", "course", "lesson", "short", "minute",
         "minutes", "sum", "remember", "let", "okay", "thing", "things", "lot", "bit", "part", "called", "call",
         "means", "refers", "usually", "therefore", "also", "really"}
_GREETINGS = {"welcome", "hello", "hi", "thanks", "thank", "good", "okay", "ok", "so", "alright"}
_PRONOUNS = {"it", "this", "that", "there", "these", "those", "they", "he", "she", "we", "you", "i", "what",
             "which", "who", "here", "one", "all", "some", "each", "every", "everything", "something"}
_TOPIC = re.compile(r"\b(?:lecture|talk|lesson|class|session|introduction)\s+(?:is\s+)?(?:on|about|to)\s+"
                    r"(?P<topic>[^.,;!?]{3,60})", re.I)
_IS_DEFINITION = re.compile(r"^(?:an?\s+|the\s+)?(?P<term>[A-Za-z][\w\s'-]{1,40}?)\s+(?:is|are|refers to|means)"
                            r"\s+(?P<definition>(?:(?:an?|the|any|one)\s+|\w+(?:\s+\w+)?\s+(?:that|which|who|whose)\s+).{8,})$",
                            re.I)
_CALLED = re.compile(r"^(?P<definition>[A-Za-z][\w\s,'-]{3,80}?)\s+(?:is|are)\s+(?:\w+\s+)?called\s+"
                     r"(?P<term>[A-Za-z][\w\s'-]{1,40})$", re.I)


# --- text helpers -------------------------------------------------------------------------------


@cache
def _segmenter() -> Any:
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


@cache
def _stopwords() -> frozenset[str]:
    import yake

    return frozenset(yake.KeywordExtractor(lan="en").stopword_set)


def sentences(text: str, *, max_words: int = 40) -> list[str]:
    """Split ``text`` into sentences (pysbd); unpunctuated runs are cut into pieces of ``max_words``."""
    result: list[str] = []
    for sentence in _segmenter().segment(text.strip()):
        words = sentence.split()
        for start in range(0, len(words), max_words):
            piece = " ".join(words[start : start + max_words]).strip()
            if piece:
                result.append(piece)
    return result


def words(text: str) -> list[str]:
    """Lower-case content words of ``text`` (regex tokens without stop words)."""
    stop = _stopwords()
    return [w for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in stop and len(w) > 2]


def textrank(items: list[str]) -> np.ndarray:
    """TextRank scores of ``items`` (sentences): PageRank over their shared-word similarity graph."""
    count = len(items)
    if count == 0:
        return np.zeros(0)
    bags = [set(words(s)) for s in items]
    weights = np.zeros((count, count))
    for i in range(count):
        for j in range(i + 1, count):
            shared = len(bags[i] & bags[j])
            if shared and len(bags[i]) > 1 and len(bags[j]) > 1:
                weights[i, j] = weights[j, i] = shared / (np.log(len(bags[i])) + np.log(len(bags[j])))
    totals = weights.sum(axis=1, keepdims=True)
    transition = np.divide(weights, totals, out=np.full_like(weights, 1.0 / count), where=totals > 0)
    scores = np.full(count, 1.0 / count)
    for _ in range(100):
        updated = 0.15 / count + 0.85 * transition.T @ scores
        if np.abs(updated - scores).sum() < 1e-8:
            break
        scores = updated
    return scores


def top_sentences(items: list[str], limit: int) -> list[str]:
    """The ``limit`` best-ranked of ``items``, in their original order."""
    if len(items) <= limit:
        return list(items)
    scores = textrank(items)
    best = sorted(np.argsort(-scores, kind="stable")[:limit])
    return [items[i] for i in best]


def _stem(word: str) -> str:
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def keyphrases(text: str, limit: int = 5) -> list[str]:
    """The ``limit`` most telling phrases of ``text`` (YAKE), without occasion words or near-duplicates."""
    import yake

    if not text.strip():
        return []
    extractor = yake.KeywordExtractor(lan="en", n=3, top=limit * 4, dedupLim=0.7)
    found: list[str] = []
    seen: set[str] = set()
    for phrase, _score in extractor.extract_keywords(text):
        tokens = phrase.lower().split()
        if any(t in _META for t in tokens) or any(t in _PRONOUNS for t in tokens):
            continue
        key = " ".join(_stem(t) for t in tokens)
        if key in seen:
            continue
        seen.add(key)
        found.append(phrase)
        if len(found) == limit:
            break
    return found


def _heading(phrase: str) -> str:
    return " ".join(w if w.isupper() else w[:1].upper() + w[1:] for w in phrase.split())


_VERB = re.compile(r"\b(?:is|are|refers to|means)\b", re.I)


def clauses(sentence: str) -> list[str]:
    """Split ``sentence`` at semicolons, and at commas only where a new "X is/are ..." clause begins."""
    result: list[str] = []
    for part in re.split(r";", sentence):
        current = ""
        for piece in part.split(","):
            if current and _VERB.search(current) and _VERB.search(piece):
                result.append(current)
                current = re.sub(r"^\s*(?:and|but|while|so)\s+", "", piece)
            else:
                current = f"{current},{piece}" if current else piece
        if current.strip():
            result.append(current)
    return [c.strip().rstrip(".!?").strip() for c in result if c.strip()]


def find_definitions(text: str) -> list[dict[str, str]]:
    """Definitions stated in ``text``: "X is a ...", "X refers to ...", "... are called X"."""
    found: list[dict[str, str]] = []
    seen: set[str] = set()
    for sentence in sentences(text):
        for clause in clauses(sentence):
            match = _IS_DEFINITION.match(clause) or _CALLED.match(clause)
            if not match:
                continue
            term = match.group("term").strip()
            definition = match.group("definition").strip()
            term_words = term.lower().split()
            if len(term_words) > 4 or term_words[0] in _PRONOUNS or all(w in _stopwords() for w in term_words):
                continue
            if len(definition.split()) < 2:
                continue
            key = " ".join(_stem(w) for w in term_words)
            if key not in seen:
                seen.add(key)
                found.append({"term": term[:1].upper() + term[1:], "definition": definition[:1].upper() +
                              definition[1:] + "."})
    return found


# --- local provider ---------------------------------------------------------------------------------


def local_chunk_notes(text: str, *, part: int = 1, parts: int = 1) -> dict[str, Any]:
    """Extractive notes of one chunk of transcript: sections, key points and definitions."""
    items = sentences(text)
    sections = []
    used: set[str] = set()
    for start in range(0, len(items), SENTENCES_PER_SECTION):
        group = items[start : start + SENTENCES_PER_SECTION]
        body = " ".join(group)
        heading = next((p for p in keyphrases(body, 6) if p.lower() not in used), None)
        heading = heading or f"Part {part}" + (f".{start // SENTENCES_PER_SECTION + 1}" if start else "")
        used.add(heading.lower())
        sections.append({"heading": _heading(heading), "content": " ".join(top_sentences(group, 3))})
    return {
        "sections": sections,
        "key_points": top_sentences(items, 3),
        "definitions": find_definitions(text),
    }


def _guess_title(transcript: str) -> str:
    opening = " ".join(sentences(transcript)[:5])
    match = _TOPIC.search(opening)
    if match:
        return _heading(match.group("topic").strip())
    phrases = keyphrases(transcript, 1)
    return _heading(phrases[0]) if phrases else "Lecture notes"


def _is_greeting(sentence: str) -> bool:
    first = sentence.split()[0].lower().strip(",.!") if sentence.split() else ""
    return first in _GREETINGS


def local_merge(notes: list[dict[str, Any]], transcript: str) -> dict[str, Any]:
    """Join per-chunk notes into the lecture's title, summary and takeaways (extractive)."""
    points = [p for n in notes for p in n.get("key_points", []) if not _is_greeting(p)]
    every = [s for s in sentences(transcript) if not _is_greeting(s)]
    summary_from = every if len(transcript) < 20000 else points
    takeaways = min(MAX_TAKEAWAYS, max(2, len(points) // 2 + 1))
    return {
        "title": _guess_title(transcript),
        "summary": " ".join(top_sentences(summary_from, 3)),
        "key_takeaways": top_sentences(points, takeaways),
    }


# --- OpenAI provider -------------------------------------------------------------------------------

_CHUNK_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sections", "key_points", "definitions"],
    "properties": {
        "sections": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["heading", "content"],
            "properties": {"heading": {"type": "string"}, "content": {"type": "string"}}}},
        "key_points": {"type": "array", "items": {"type": "string"}},
        "definitions": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["term", "definition"],
            "properties": {"term": {"type": "string"}, "definition": {"type": "string"}}}},
    },
}
_MERGE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["title", "summary", "key_takeaways"],
    "properties": {"title": {"type": "string"}, "summary": {"type": "string"},
                   "key_takeaways": {"type": "array", "items": {"type": "string"}}},
}
_SYSTEM = ("You write concise study notes from a lecture transcript. Use only facts stated in the transcript; "
           "never add outside knowledge. Definitions must be terms the speaker defined.")


def _chat_json(prompt: str, schema: dict[str, Any], name: str) -> dict[str, Any]:
    completion = openai_client().chat.completions.create(
        model=OPENAI_CHAT_MODEL,
        messages=[{"role": "system", "content": _SYSTEM}, {"role": "user", "content": prompt}],
        response_format={"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}},
    )
    message = completion.choices[0].message
    try:
        value = json.loads(message.content or "")
    except json.JSONDecodeError:
        raise TransientError("the summarizer answered with malformed JSON") from None
    if not isinstance(value, dict):
        raise TransientError("the summarizer answered with an unexpected JSON shape")
    return value


def openai_chunk_notes(text: str, *, part: int = 1, parts: int = 1) -> dict[str, Any]:
    """Notes of one chunk by an OpenAI chat model, in the same shape as :func:`local_chunk_notes`."""
    prompt = (f"Transcript part {part} of {parts}. Write 1-3 sections (heading and a short paragraph), up to "
              f"3 key points and every definition the speaker gives.\n\n{text}")
    return _chat_json(prompt, _CHUNK_SCHEMA, "chunk_notes")


def openai_merge(notes: list[dict[str, Any]], transcript: str) -> dict[str, Any]:
    """The lecture's title, summary and takeaways by an OpenAI chat model, from the per-chunk notes."""
    digest = json.dumps([{"sections": n.get("sections", []), "key_points": n.get("key_points", [])}
                         for n in notes], ensure_ascii=False)
    prompt = ("These are notes of consecutive parts of one lecture. Give the lecture a short title, a summary "
              f"of 2-4 sentences and up to {MAX_TAKEAWAYS} key takeaways.\n\n{digest}")
    return _chat_json(prompt, _MERGE_SCHEMA, "lecture_notes")


CHUNK_PROVIDERS = {"local": local_chunk_notes, "openai": openai_chunk_notes}
MERGE_PROVIDERS = {"local": local_merge, "openai": openai_merge}


def chunk_notes(text: str, *, part: int = 1, parts: int = 1) -> dict[str, Any]:
    """Notes of one chunk with the configured provider; an empty chunk gives empty notes."""
    if not text.strip():
        return {"sections": [], "key_points": [], "definitions": []}
    return pick("summarize", CHUNK_PROVIDERS)(text, part=part, parts=parts)


def merge(notes: list[dict[str, Any]], transcript: str) -> dict[str, Any]:
    """The lecture result from per-chunk ``notes`` and the whole ``transcript``."""
    sections = [s for n in notes for s in n.get("sections", []) if s.get("content")]
    definitions: list[dict[str, str]] = []
    seen: set[str] = set()
    for n in notes:
        for d in n.get("definitions", []):
            key = " ".join(_stem(w) for w in d.get("term", "").lower().split())
            if key and key not in seen:
                seen.add(key)
                definitions.append({"term": d["term"], "definition": d.get("definition", "")})
    if transcript.strip():
        overview = pick("summarize", MERGE_PROVIDERS)(notes, transcript)
    else:
        overview = {"title": "Lecture notes", "summary": "", "key_takeaways": []}
    return {
        "title": overview.get("title") or "Lecture notes",
        "summary": overview.get("summary", ""),
        "sections": sections,
        "key_takeaways": list(overview.get("key_takeaways", []))[:MAX_TAKEAWAYS],
        "definitions": definitions,
        "transcript": transcript,
    }
