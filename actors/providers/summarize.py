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
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from actors.errors import InvalidModelOutput
from actors.providers import choose, module_installed, openai_client, pick
from conveyor.config import settings

#: The chat model of the OpenAI provider.
OPENAI_CHAT_MODEL = "gpt-4o-mini"
SENTENCES_PER_SECTION = 6
MAX_TAKEAWAYS = 6
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
#: Words that name the occasion rather than the subject; never a heading or title.
_META = {"lecture", "lectures", "welcome", "today", "talk", "class", "course", "lesson", "short", "minute",
         "minutes", "sum", "remember", "let", "okay", "thing", "things", "lot", "bit", "part", "called", "call",
         "means", "refers", "usually", "therefore", "also", "really", "good", "morning", "afternoon", "evening",
         "everyone", "everybody", "hello", "thanks", "thank", "session", "week", "next", "started", "listening",
         "coming", "back", "first", "second", "third", "finally", "look", "cover", "explore", "see"}
_GREETINGS = {"welcome", "hello", "hi", "thanks", "thank", "good", "okay", "ok", "alright", "hey"}
_PRONOUNS = {"it", "this", "that", "there", "these", "those", "they", "he", "she", "we", "you", "i", "what",
             "which", "who", "here", "one", "all", "some", "each", "every", "everything", "something", "its",
             "their", "our", "his", "her", "them", "when", "if", "so", "how", "why"}
_TOPIC = re.compile(r"\b(?:(?:lecture|talk|lesson|class|session|introduction)\s+(?:is\s+)?(?:on|about|to)|"
                    r"(?:today|in this (?:lecture|session|talk|class|lesson)),?\s+we(?:'ll| will)?\s+(?:look at|talk "
                    r"about|cover|explore|discuss|study|learn about|see))\s+(?P<topic>[^.,;!?]{3,60})", re.I)
#: Words a title keeps in lower case unless they begin it.
_SMALL = {"a", "an", "the", "and", "or", "of", "in", "on", "to", "for", "by", "at", "as", "its", "with"}
#: "X is a/the ...", "X are Ys that ...", "X refers to ...", "X means ..." (anything after "means").
_IS_DEFINITION = re.compile(
    r"^(?:an?\s+|the\s+)?(?P<term>[A-Za-z][\w\s'’-]{1,40}?)\s+(?:(?:is|are|refers to)\s+(?P<definition>(?:(?:an?|the|any|"
    r"one)\s+|\w+(?:\s+\w+)?\s+(?:that|which|who|whose|by which|in which)\s+).{8,})|means\s+(?:that\s+)?"
    r"(?P<meaning>.{8,}))$", re.I)
#: "Y is called X" defines X as Y (the words before "called" are the definition).
_CALLED = re.compile(r"^(?P<definition>[A-Za-z][\w\s,'’-]{3,100}?)\s+(?:is|are)\s+(?:\w+\s+)?called\s+"
                     r"(?:an?\s+|the\s+)?(?P<term>[A-Za-z][\w\s'’-]{1,40}?)(?:,.*)?$", re.I)
#: "X, a Y that ..., verb ...": an appositive definition between commas, with its relative clause (a bare
#: "X, a Y," names, it does not define). After a topic ("the index, a B-tree, a balanced tree that ...")
#: it is the second noun that is defined.
_APPOSITIVE = re.compile(r"^(?:[\w'’ -]{1,40},\s+)?(?:an?\s+|the\s+)?(?P<term>[A-Za-z][\w'’-]*(?:\s+[\w'’-]+){0,3}),\s+"
                         r"(?P<definition>an?\s+[^,]{2,100}?\b(?:that|which|who)\b[^,]{3,100}),\s+\w+", re.I)
#: A signpost before a clause: "First, ...", "So, ...".
_LEAD = re.compile(r"^(?:(?:first|second|third|fourth|next|then|now|so|also|finally|and|but)(?:ly)?,?\s+)+", re.I)
#: A topic named, then restated as the subject of its definition: "First, X, an X is ...".
_RESTATED = re.compile(r"^([\w'’ -]{1,40}),\s+((?:an?\s+|the\s+)?\1\b)", re.I)
#: A closing cue whose sentence is a takeaway once the cue is dropped.
_CUE = re.compile(r"^(?:to sum up|in summary|in short|to summarise|to summarize|so remember|remember|the "
                  r"key point is|in conclusion)\s*[,:]?\s*(?:that\s+)?", re.I)
#: Sentences that only manage the occasion: greetings, sign-offs, announcements of what comes.
_FILLER = re.compile(
    r"^(?:(?:good (?:morning|afternoon|evening)|hello|hi|hey|welcome|okay|ok|alright|right)\b.*|"
    r"(?:thank you|thanks)\b.*|.*\b(?:see you|that's all|that is all|that's it for|thanks for (?:listening|coming))\b.*|"
    r"(?:today|in this (?:lecture|session|talk|class)|this (?:lecture|session|talk) is about)\b.*|"
    r"(?:first|second|third|fourth|next|finally|then|now)(?:ly)?,?\s+(?:the\s+|an?\s+)?[\w'’-]+(?:\s+[\w'’-]+)?[.!?]?|"
    r"(?:let's|let us) (?:get started|begin|start)\b.*)$", re.I)


# --- text helpers -------------------------------------------------------------------------------


@cache
def _segment() -> Callable[[str], list[str]]:
    """pysbd's sentence splitter (``conveyor[local]``); without it, a split after ``.``, ``!`` or ``?``,
    enough for the cloud path, which only mends chunk joins and cuts given transcripts with it."""
    if not module_installed("pysbd"):
        return lambda text: re.split(r"(?<=[.!?])\s+", text)
    import pysbd

    return pysbd.Segmenter(language="en", clean=False).segment


@cache
def _stopwords() -> frozenset[str]:
    import yake

    return frozenset(yake.KeywordExtractor(lan="en").stopword_set)


def sentences(text: str, *, max_words: int = 40) -> list[str]:
    """Split ``text`` into sentences; unpunctuated runs are cut into pieces of ``max_words``."""
    result: list[str] = []
    for sentence in _segment()(text.strip()):
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


def _definition(clause: str) -> tuple[str, str] | None:
    """The (term, definition) a clause states, the right way round, or None."""
    clause = _LEAD.sub("", clause.strip())
    clause = _RESTATED.sub(r"\2", clause)  # "inflation, an inflation is ..." -> "an inflation is ..."
    match = _APPOSITIVE.match(clause)
    if match:
        return match.group("term"), match.group("definition")
    match = _CALLED.match(clause)
    if match:
        definition = match.group("definition").strip().rstrip(",")
        named = re.match(r"(?:an?\s+|the\s+)?" + re.escape(match.group("term").strip()) + r",\s+", definition, re.I)
        if named:  # "the checkpoint, copying ... is called a checkpoint": the topic named first
            definition = definition[named.end():]
        if definition.split()[0].lower() in _PRONOUNS:
            return None  # "This molecule is called ...": its definition is elsewhere
        return match.group("term"), definition
    match = _IS_DEFINITION.match(clause)
    if match:
        return match.group("term"), match.group("definition") or match.group("meaning")
    return None


def find_definitions(text: str, glossary: list[str] | None = None) -> list[dict[str, str]]:
    """Definitions stated in ``text``, each term once: "X is a ...", "X refers to ...", "X means ...",
    "... is called X", "X, a Y that ..., ..."; a glossary term the text explains is always looked for."""
    found: list[dict[str, str]] = []
    seen: set[str] = set()
    for sentence in sentences(text):
        for clause in [sentence, *clauses(sentence)]:
            pair = _definition(clause.rstrip(".!?"))
            if pair is None:
                continue
            term, definition = (part.strip().strip(",;:").strip() for part in pair)
            term_words = term.lower().split()
            if not term_words or len(term_words) > 4 or term_words[0] in _PRONOUNS:
                continue
            if all(w in _stopwords() for w in term_words) or any(w in _META for w in term_words):
                continue
            if len(definition.split()) < 2:
                continue
            key = " ".join(_stem(w) for w in term_words)
            if key not in seen:
                seen.add(key)
                found.append({"term": _glossary_form(term, glossary), "definition": definition[:1].upper() +
                              definition[1:].rstrip(".") + "."})
    for term in glossary or []:  # a glossary term explained in a plainer form: "X is ...", "X are ..."
        key = " ".join(_stem(w) for w in term.lower().split())
        if key in seen:
            continue
        pattern = re.compile(r"^(?:an?\s+|the\s+)?" + re.escape(term) + r"\s+(?:is|are|means|refers to)\s+"
                             r"(?:that\s+)?(?P<definition>(?!not\b|also\b|what\b|how\b|why\b).{12,})$", re.I)
        for sentence in sentences(text):
            match = next((m for c in clauses(sentence) if (m := pattern.match(_LEAD.sub("", c)))), None)
            if match:
                seen.add(key)
                definition = match.group("definition").strip()
                found.append({"term": _glossary_form(term, glossary),
                              "definition": definition[:1].upper() + definition[1:] + "."})
                break
    return found


def _glossary_form(term: str, glossary: list[str] | None) -> str:
    for entry in glossary or []:
        if entry.lower() == term.lower():
            term = entry
            break
    return term[:1].upper() + term[1:] if term.islower() else term


# --- local provider ---------------------------------------------------------------------------------


def _is_filler(sentence: str) -> bool:
    """A greeting, sign-off, announcement or bare signpost ("Second, the log."): no claim of its own."""
    words = sentence.split()
    return len(words) < 3 or bool(_FILLER.match(sentence.strip())) or (
        words[0].lower().strip(",.!") in _GREETINGS and len(words) < 6)


def _is_claim(sentence: str) -> bool:
    """A complete claim: not filler, not opening with a dangling pronoun or lower-case fragment."""
    first = sentence.split()[0] if sentence.split() else ""
    return not _is_filler(sentence) and first[:1].isupper() and first.lower().strip(",") not in {"and", "but", "or"}


def join_chunks(texts: list[str]) -> str:
    """The chunk transcripts as one text, mended where a cut fell inside a sentence (see :func:`mend`)."""
    return mend(" ".join(t.strip() for t in texts if t.strip()))


def mend(text: str) -> str:
    """``text`` with no sentence starting in lower case, as a cut between chunks or Whisper's 30 s windows
    leaves them: an echo of the previous word's end ("eats another. other, animals") is dropped, and
    any other lower-case start goes on the previous sentence (whose cut-off full stop is dropped)."""
    mended: list[str] = []
    for sentence in sentences(text, max_words=10_000):
        first = sentence[:1]
        if not mended or not first.islower():
            mended.append(sentence)
            continue
        word = re.match(r"[\w'’-]+", sentence)
        previous = re.findall(r"[\w'’-]+", mended[-1])
        if word and previous and len(word.group()) >= 2 and previous[-1].lower() != word.group().lower() \
                and previous[-1].lower().endswith(word.group().lower()):
            rest = sentence[word.end():].lstrip(" ,;:-")
            if rest:
                mended.append(rest[:1].upper() + rest[1:])
            continue
        mended[-1] = re.sub(r"[.!?]+$", "", mended[-1].rstrip()) + " " + sentence
    return " ".join(mended)


def _section_heading(body: str, used: set[str], glossary: list[str] | None) -> str | None:
    """The section's topic: the glossary term it names most (first on a tie), else its top keyphrase."""
    lowered = body.lower()
    named = sorted(((lowered.count(t.lower()), -lowered.find(t.lower()), t) for t in glossary or []
                    if t.lower() in lowered and t.lower() not in used), reverse=True)
    if named:
        return named[0][2]
    for phrase in keyphrases(body, 6):
        tokens = phrase.split()
        if phrase.lower() in used or tokens[-1].lower().endswith(("ed", "ing", "ly")) and len(tokens) > 1:
            continue
        return phrase
    return None


def _heading(phrase: str) -> str:
    """Title case, keeping a glossary's or an acronym's own capitals ("B-tree", "ATP")."""
    def cap(word: str) -> str:
        if any(c.isupper() for c in word):
            return word
        return "-".join(p[:1].upper() + p[1:] for p in word.split("-"))

    return " ".join(cap(w) for w in phrase.split())


def local_chunk_notes(text: str, *, part: int = 1, parts: int = 1,
                      glossary: list[str] | None = None) -> dict[str, Any]:
    """Extractive notes of one chunk of transcript: sections, key points and definitions."""
    items = [s for s in sentences(text) if not _is_filler(s)]
    sections = []
    used: set[str] = set()
    for start in range(0, len(items), SENTENCES_PER_SECTION):
        group = items[start : start + SENTENCES_PER_SECTION]
        heading = _section_heading(" ".join(group), used, glossary)
        heading = heading or f"Part {part}" + (f".{start // SENTENCES_PER_SECTION + 1}" if start else "")
        used.add(heading.lower())
        sections.append({"heading": _heading(heading), "content": " ".join(top_sentences(group, 3))})
    return {
        "sections": sections,
        "key_points": top_sentences([s for s in items if _is_claim(s)], 3),
        "definitions": find_definitions(text, glossary),
    }


def _guess_title(transcript: str, glossary: list[str] | None = None) -> str:
    opening = " ".join(sentences(transcript)[:5])
    match = _TOPIC.search(opening)
    if match:
        words = _heading(match.group("topic").strip()).split()
        return " ".join([words[0]] + [w.lower() if w.lower() in _SMALL else w for w in words[1:]])
    phrases = keyphrases(" ".join(s for s in sentences(transcript) if not _is_filler(s)), 1)
    return _heading(phrases[0]) if phrases else "Lecture notes"


def _takeaway(sentence: str) -> str:
    stripped = _CUE.sub("", sentence).strip()
    return stripped[:1].upper() + stripped[1:] if stripped else sentence


def local_notes(transcript: str, glossary: list[str] | None = None) -> dict[str, Any]:
    """The whole lecture's extractive notes, no sentence used twice.

    Takeaways come first: the sentences the speaker marks as such ("To sum up, ...", without the cue),
    then the best-ranked claims; the summary takes the best-ranked claims left; each section, a group
    of sentences headed by its topic, keeps its best sentences not already used. Greetings, sign-offs
    and bare signposts are left out everywhere.
    """
    every = [s for s in sentences(transcript) if not _is_filler(s)]
    claims = [s for s in every if _is_claim(s)]
    used: set[str] = set()
    cued = [s for s in claims if _CUE.match(s)]
    takeaway_count = min(MAX_TAKEAWAYS, max(2, len(claims) // 5))
    ranked = [claims[i] for i in np.argsort(-textrank(claims), kind="stable")] if claims else []
    chosen = cued[:takeaway_count] + [s for s in ranked if s not in cued][: max(0, takeaway_count - len(cued))]
    used.update(chosen)
    takeaways = [_takeaway(s) for s in claims if s in used]
    summary = [s for s in ranked if s not in used][:3]
    used.update(summary)
    summary = [s for s in claims if s in summary]
    sections: list[dict[str, str]] = []
    headings: set[str] = set()
    for start in range(0, len(every), SENTENCES_PER_SECTION):
        group = every[start : start + SENTENCES_PER_SECTION]
        left = [s for s in group if s not in used]
        if not left:
            continue
        content = top_sentences(left, 3)
        used.update(content)
        heading = _section_heading(" ".join(group), headings, glossary) or f"Part {len(sections) + 1}"
        headings.add(heading.lower())
        sections.append({"heading": _heading(heading), "content": " ".join(content)})
    return {"title": _guess_title(transcript, glossary), "summary": " ".join(summary), "sections": sections,
            "key_takeaways": takeaways}


def local_merge(notes: list[dict[str, Any]], transcript: str, glossary: list[str] | None = None) -> dict[str, Any]:
    """The lecture's title, summary, sections and takeaways, from the whole transcript (see :func:`local_notes`):
    made in one piece so no sentence repeats and sentences cut at chunk joins are whole again."""
    return local_notes(transcript, glossary)


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


class _Section(BaseModel):
    heading: str
    content: str


class _Definition(BaseModel):
    term: str
    definition: str


class _ChunkAnswer(BaseModel):
    sections: list[_Section]
    key_points: list[str]
    definitions: list[_Definition]


class _MergeAnswer(BaseModel):
    title: str
    summary: str
    key_takeaways: list[str]


_ANSWERS: dict[str, type[BaseModel]] = {"chunk_notes": _ChunkAnswer, "lecture_notes": _MergeAnswer}
_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S)


def parse_answer(content: str, name: str) -> dict[str, Any]:
    """The JSON object a chat model answered, checked against the answer's shape.

    A server that ignores ``response_format`` often wraps the JSON in prose or a code fence: the object
    is taken from a fenced block, else from the first ``{`` to the last ``}``.

    Raises:
      ValueError: saying what is wrong, to tell the model when it is asked again.
    """
    text = content.strip()
    candidates = [text, *_FENCED.findall(text)]
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{") : text.rindex("}") + 1])
    value: Any = None
    for candidate in candidates:
        try:
            value = json.loads(candidate)
            break
        except json.JSONDecodeError:
            continue
    else:
        raise ValueError("the answer holds no JSON object")
    if not isinstance(value, dict):
        raise ValueError(f"the answer is a JSON {type(value).__name__}, not an object")
    try:
        return _ANSWERS[name].model_validate(value).model_dump()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:5])
        raise ValueError(f"the JSON does not have the asked shape ({problems})") from None


def _chat_json(prompt: str, schema: dict[str, Any], name: str) -> dict[str, Any]:
    """Ask the notes model for JSON following ``schema``; ask once more, telling it what was wrong, when
    the answer is not that JSON (a self-hosted server may ignore ``response_format``).

    Raises:
      InvalidModelOutput: when the second answer is not the JSON asked for either.
    """
    config = settings()
    model = config.notes_model or OPENAI_CHAT_MODEL
    messages: list[dict[str, str]] = [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": f"{prompt}\n\nAnswer with one JSON object that follows this JSON Schema, "
                                    f"and nothing else:\n{json.dumps(schema)}"},
    ]
    client = openai_client(keyless=bool(config.notes_model))
    for attempt in (1, 2):
        completion = client.chat.completions.create(
            model=model, messages=messages,
            response_format={"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}},
        )
        content = completion.choices[0].message.content or ""
        try:
            return parse_answer(content, name)
        except ValueError as exc:
            if attempt == 2:
                raise InvalidModelOutput(f"the notes model {model} did not answer with the JSON asked for, "
                                         f"twice: {exc}") from None
            messages += [{"role": "assistant", "content": content[:8000]},
                         {"role": "user", "content": f"That answer cannot be used: {exc}. Answer again with only "
                                                     f"the JSON object, following the schema."}]
    raise AssertionError("unreachable")


def openai_chunk_notes(text: str, *, part: int = 1, parts: int = 1,
                       glossary: list[str] | None = None) -> dict[str, Any]:
    """Notes of one chunk by an OpenAI chat model, in the same shape as :func:`local_chunk_notes`."""
    prompt = (f"Transcript part {part} of {parts}. Write 1-3 sections (heading and a short paragraph), up to "
              f"3 key points and every definition the speaker gives.")
    if glossary:
        prompt += " Spell these terms exactly so: " + ", ".join(glossary) + "."
    prompt += f"\n\n{text}"
    return _chat_json(prompt, _CHUNK_SCHEMA, "chunk_notes")


def openai_merge(notes: list[dict[str, Any]], transcript: str, glossary: list[str] | None = None) -> dict[str, Any]:
    """The lecture's title, summary and takeaways by an OpenAI chat model, from the per-chunk notes."""
    digest = json.dumps([{"sections": n.get("sections", []), "key_points": n.get("key_points", [])}
                         for n in notes], ensure_ascii=False)
    prompt = ("These are notes of consecutive parts of one lecture. Give the lecture a short title, a summary "
              f"of 2-4 sentences and up to {MAX_TAKEAWAYS} key takeaways.\n\n{digest}")
    return _chat_json(prompt, _MERGE_SCHEMA, "lecture_notes")


CHUNK_PROVIDERS = {"local": local_chunk_notes, "openai": openai_chunk_notes}
MERGE_PROVIDERS = {"local": local_merge, "openai": openai_merge}


def chunk_notes(text: str, *, part: int = 1, parts: int = 1, glossary: list[str] | None = None) -> dict[str, Any]:
    """Notes of one chunk with the configured provider; an empty chunk gives empty notes."""
    if not text.strip():
        return {"sections": [], "key_points": [], "definitions": []}
    return pick("summarize", CHUNK_PROVIDERS)(text, part=part, parts=parts, glossary=glossary)


def _provider() -> str:
    """``openai`` (any OpenAI-compatible server) when ``CONVEYOR_NOTES_MODEL`` names a model or the key
    is set and no provider is forced, else ``CONVEYOR_PROVIDER_SUMMARIZE`` or local."""
    return choose("summarize")


def merge(notes: list[dict[str, Any]], transcript: str, *, glossary: list[str] | None = None) -> dict[str, Any]:
    """The lecture result from per-chunk ``notes`` and the whole ``transcript``.

    The local provider writes the title, summary, sections and takeaways from the whole transcript in
    one piece (see :func:`local_notes`), and looks for definitions there too, so that one cut by a
    chunk join is found; a model provider merges its per-chunk sections.
    """
    local = _provider() == "local"
    definitions: list[dict[str, str]] = []
    seen: set[str] = set()
    found = [d for n in notes for d in n.get("definitions", [])]
    if local:
        found = find_definitions(transcript, glossary) + found
    for d in found:
        key = " ".join(_stem(w) for w in d.get("term", "").lower().split())
        if key and key not in seen:
            seen.add(key)
            definitions.append({"term": d["term"], "definition": d.get("definition", "")})
    if transcript.strip():
        overview = pick("summarize", MERGE_PROVIDERS)(notes, transcript, glossary)
    else:
        overview = {"title": "Lecture notes", "summary": "", "key_takeaways": []}
    sections = overview.get("sections")
    if sections is None:
        sections = [s for n in notes for s in n.get("sections", []) if s.get("content")]
    return {
        "title": overview.get("title") or "Lecture notes",
        "summary": overview.get("summary", ""),
        "sections": sections,
        "key_takeaways": list(overview.get("key_takeaways", []))[:MAX_TAKEAWAYS],
        "definitions": definitions,
        "transcript": transcript,
    }
