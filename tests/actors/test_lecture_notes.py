"""The local lecture notes: headings that name topics, definitions the right way round, no sentence twice,
takeaways that are claims, sentences mended at chunk joins, and the glossary's spelling."""

from __future__ import annotations

import re

import pytest

from actors.media.glossary import prompt, respell
from actors.providers import summarize as sm
from bench.lectures import LECTURES

LECTURE = (
    "Good morning, everyone. Today we look at how a database survives a crash. "
    "First, the log. A write-ahead log is a file where the database records every change before it applies it. "
    "Second, the checkpoint. Copying the changed pages to disk is called a checkpoint. "
    "A B-tree, a balanced tree that keeps keys in sorted order, lets the database find a row quickly. "
    "Durability means that a committed transaction stays committed, even after a crash. "
    "The write-ahead log is what makes durability cheap, because only the log is flushed. "
    "Recovery reads the log and repeats the changes that were not yet applied. "
    "To sum up, log first, apply later, and checkpoint often. Thank you, and see you next week."
)
GLOSSARY = ["write-ahead log", "checkpoint", "B-tree", "durability"]


def _notes(text: str = LECTURE, glossary: list[str] | None = GLOSSARY) -> dict:
    return sm.merge([sm.chunk_notes(text, glossary=glossary)], text, glossary=glossary)


def _all_sentences(notes: dict) -> list[str]:
    found = sm.sentences(notes["summary"]) + list(notes["key_takeaways"])
    for section in notes["sections"]:
        found += sm.sentences(section["content"])
    return found


def test_no_greeting_or_filler_becomes_a_heading_or_a_sentence_of_the_notes():
    notes = _notes()
    headings = [s["heading"] for s in notes["sections"]]
    assert headings and not any(re.search(r"good|morning|today|thank|week", h, re.I) for h in headings)
    assert notes["title"] == "How a Database Survives a Crash"
    text = " ".join(_all_sentences(notes))
    for filler in ("Good morning", "Thank you", "First, the log.", "Second, the checkpoint."):
        assert filler not in text


def test_a_heading_is_the_sections_topic_title_cased():
    notes = _notes(glossary=None)
    for section in notes["sections"]:
        words = section["heading"].split()
        assert words and all(w[:1].isupper() or not w[:1].isalpha() for w in words), section["heading"]
    with_glossary = _notes()
    assert with_glossary["sections"][0]["heading"] in ("Write-Ahead Log", "Checkpoint", "B-tree", "Durability")


@pytest.mark.parametrize(("sentence", "term", "definition"), [
    ("Copying the changed pages to disk is called a checkpoint.", "Checkpoint", "Copying the changed pages to disk."),
    ("Animals that eat plants are called primary consumers.", "Primary consumers", "Animals that eat plants."),
    ("Second, the checkpoint, copying the changed pages to disk is called a checkpoint.", "Checkpoint",
     "Copying the changed pages to disk."),
    ("Durability means that a committed transaction stays committed.", "Durability",
     "A committed transaction stays committed."),
    ("Glycolysis means splitting one sugar molecule into two.", "Glycolysis", "Splitting one sugar molecule into two."),
    ("A B-tree, a balanced tree that keeps keys sorted, lets the database find rows.", "B-tree",
     "A balanced tree that keeps keys sorted."),
    # a topic, then the appositive: "the index" is named, the B-tree defined (heard as one sentence)
    ("Third, the index, a B-tree, a balanced tree that keeps keys sorted, lets the database find rows.", "B-tree",
     "A balanced tree that keeps keys sorted."),
    ("First, the log. A write-ahead log is a file where every change is recorded first.", "Write-ahead log",
     "A file where every change is recorded first."),
    ("First, inflation, an inflation is a rise of the general level of prices.", "Inflation",
     "A rise of the general level of prices."),
])
def test_definitions_read_the_right_way_round(sentence, term, definition):
    found = sm.find_definitions(sentence)
    assert found == [{"term": term, "definition": definition}]


def test_a_bare_appositive_names_but_does_not_define():
    assert sm.find_definitions("My colleague, a doctor, came by with the results.") == []


def test_a_pronoun_is_never_a_term_or_a_definition():
    assert sm.find_definitions("This molecule is called ATP. It is a good day. There is a way to do it.") == []


def test_no_sentence_appears_twice_and_takeaways_are_complete_claims():
    for lecture in [*LECTURES, None]:
        text = " ".join(lecture.paragraphs) if lecture else LECTURE
        notes = _notes(text, lecture.glossary if lecture else GLOSSARY)
        every = [s.lower().rstrip(".") for s in _all_sentences(notes)]
        assert len(every) == len(set(every)), notes
        for takeaway in notes["key_takeaways"]:
            assert len(takeaway.split()) >= 5 and takeaway[0].isupper() and takeaway.endswith("."), takeaway
            assert not re.match(r"(first|second|third|finally|next)\b", takeaway, re.I)
    assert "Log first, apply later, and checkpoint often." in _notes()["key_takeaways"]


def test_sentences_cut_at_a_chunk_join_are_mended():
    joined = sm.join_chunks(["Food chains link species. Energy passes from one organism to an",
                             "other, animals that eat plants are called primary consumers.", "",
                             "Decomposers recycle. They", "return nutrients to the soil."])
    assert "to an other, animals" in joined and "They return nutrients" in joined
    assert not any(s[0].islower() for s in sm.sentences(joined))
    # Whisper's own echo across its 30 s windows, as on the bundled sample
    echoed = "A food chain is the path that energy takes as one organism eats another. other, animals that eat " \
             "plants are called primary consumers."
    assert sm.mend(echoed) == ("A food chain is the path that energy takes as one organism eats another. Animals "
                               "that eat plants are called primary consumers.")
    notes = sm.merge([], sm.mend(echoed))
    assert {"term": "Primary consumers", "definition": "Animals that eat plants."} in notes["definitions"]


def test_the_glossary_spells_terms_and_prompts_the_transcriber():
    assert prompt(["write-ahead log", "B-tree"]) == (
        "Hello, everyone. In this lecture, we will use these terms: write-ahead log, B-tree. Let's begin.")
    assert prompt([]) is None
    heard = "The right-ahead log and the b tree. Textrank ranks. Photo synthesis works. The writer had a log."
    assert respell(heard, ["write-ahead log", "B-tree", "TextRank", "photosynthesis"]) == (
        "The write-ahead log and the B-tree. TextRank ranks. Photosynthesis works. The writer had a log.")
    assert respell("the mitochondrion", ["mitochondria"]) == "the mitochondrion"  # another form, not a mishearing
    # a letter doubled or dropped inside a word, with the same ending, is a misspelling to respell
    assert respell("Then Belman-Ford runs; the belman ford way.", ["Bellman-Ford"]) == (
        "Then Bellman-Ford runs; the Bellman-Ford way.")
    assert respell("more transactions, the checkpoints", ["transaction", "checkpoint"]) == (
        "more transactions, the checkpoints")


def test_respelling_leaves_ordinary_words_and_correct_text_alone():
    every_term = [term for lecture in LECTURES for term in lecture.glossary]
    for lecture in LECTURES:  # spelled right already, next to every other lecture's terms
        assert respell(lecture.text, every_term) == lecture.text, lecture.name
    ordinary = ("The writer had a log of the central park, the interest rate and the inflated prices. A bellman "
                "rang; Ford cars passed the telephone. The vertex and its edge. Checking points, deflating tyres, "
                "a consumer's price, a cellular phone, the exit planet and the Dexter lab.")
    assert respell(ordinary, every_term) == ordinary


def test_every_glossary_term_the_lecture_explains_gets_a_definition():
    for lecture in LECTURES:
        text = " ".join(lecture.paragraphs)
        notes = _notes(text, lecture.glossary)
        defined = {d["term"].lower() for d in notes["definitions"]}
        explained = [t for t in lecture.glossary if t in lecture.definitions]
        missing = [t for t in explained if t.lower() not in defined]
        # Explained without a defining sentence, so extractive notes cannot quote one: "This molecule is called
        # adenosine triphosphate" (its definition is the sentence before), and the transit method (described
        # over two sentences). bench/notes_eval.py counts both as misses.
        assert missing in ([], ["adenosine triphosphate"], ["transit method"]), (lecture.name, missing)
