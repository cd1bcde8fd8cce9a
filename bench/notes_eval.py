"""How good are the local lecture notes? Five lectures of ``bench/lectures.py``, spoken with the shipped
Piper voice, run through the real ``lecture_notes`` stages, scored against their texts.

Usage: ``python bench/notes_eval.py [--no-glossary] [--only NAME] [--json]``. The audio is made once and
kept under ``var/notes-eval/`` (about 1 MB), so later runs only transcribe. It is not part of
``make bench`` (transcribing takes a few minutes of CPU).

Scores, per lecture and in total:
- WER: word error rate of the transcript against the lecture's text (case, punctuation and hyphens ignored;
  a number in digits counts as its spoken words: "1995" is "nineteen ninety-five").
- glossary spelled: glossary terms the lecture uses that the notes write in the glossary's spelling.
- definitions: found (expected terms defined with the expected words), precision (of the definitions the
  notes give, the share that are right), reversed (a definition whose term is the definition of another).
- duplicates: sentences that appear more than once across summary, sections and takeaways.
- bad headings: headings that are greetings or occasion words ("Good Morning", "Today We").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "var" / "notes-eval"
os.environ.setdefault("CONVEYOR_BROKER", "stub")
os.environ.setdefault("CONVEYOR_VAR_DIR", str(ROOT / "var"))

from bench.lectures import LECTURES, Lecture  # noqa: E402

_BAD_HEADING = re.compile(r"\b(good (morning|afternoon|evening)|today|welcome|hello|hi|thanks?|okay|let's|"
                          r"everyone|session|lecture)\b", re.I)


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["-", "-", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _below_hundred(n: int) -> list[str]:
    tens, ones = divmod(n, 10)
    return [_ONES[n]] if n < 20 else [_TENS[tens]] + ([_ONES[ones]] if ones else [])


def spoken(number: str) -> list[str]:
    """A number written in digits as a lecture says it ("1995": nineteen ninety five; "1990s": nineteen
    nineties; "250": two hundred fifty), so that Whisper writing digits for spoken numbers is no error.
    Other numbers are left as written."""
    digits = number[:-1] if number.endswith("s") else number
    if not digits.isdigit():
        return [number]
    n = int(digits)
    if len(digits) == 4 and (1100 <= n < 2000 or 2010 <= n < 2100) and (n % 100 >= 10 or n % 100 == 0):
        words = _below_hundred(n // 100) + (_below_hundred(n % 100) if n % 100 else ["hundred"])
    elif len(digits) <= 3 and n < 1000:
        words = ([_ONES[n // 100], "hundred"] if n >= 100 else []) + (_below_hundred(n % 100) if n % 100 or n < 100 else [])
    else:
        return [number]
    if digits != number:  # a decade or a plural: "nineties", "hundreds"
        words[-1] = words[-1][:-1] + "ies" if words[-1].endswith("y") else words[-1] + "s"
    return words


def _normal_words(text: str) -> list[str]:
    text = text.lower().replace("-", " ").replace("’", "'")
    return [word for found in re.findall(r"[a-z0-9']+", text) for word in spoken(found)]


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = _normal_words(reference), _normal_words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, heard in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != heard))
        previous = current
    return previous[-1] / max(1, len(ref))


def audio_for(lecture: Lecture) -> tuple[Path, float]:
    """The lecture spoken by the Piper voice (made once, kept under var/notes-eval/)."""
    import wave

    from scripts.make_sample import encode_mp3, synthesize

    mp3 = OUT / f"{lecture.name}.mp3"
    if not mp3.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "lecture.wav"
            synthesize(lecture.paragraphs, wav)
            encode_mp3(wav, mp3)
            with wave.open(str(wav)) as w:
                (OUT / f"{lecture.name}.seconds").write_text(f"{w.getnframes() / w.getframerate():.1f}")
    return mp3, float((OUT / f"{lecture.name}.seconds").read_text())


def _run(actor: Any, data: Any, item: int | None = None, total: int | None = None) -> Any:
    from actors.context import StageContext, stage_context

    ctx = StageContext(job_id="notes-eval", stage=actor.actor_name, item=item, items_total=total)
    with stage_context(ctx):
        return actor(data)


def notes_for(audio: Path, glossary: list[str] | None) -> dict[str, Any]:
    """The ``lecture_notes`` stages, run in order in this process, as the engine runs them."""
    from actors.files.keys import new_key, ref
    from actors.files.storage import get_storage
    from actors.stages import audio as stages

    key = new_key("uploads", audio.name)
    get_storage().put_file(key, audio)
    data: dict[str, Any] = {"audio": ref(key)}
    if glossary:
        data["glossary"] = glossary
    prepared = _run(stages.prepare_audio, data)
    if glossary and "glossary" not in prepared:  # code without the glossary input: compare without it
        raise SystemExit("this code has no glossary input; run with --no-glossary")
    items = _run(stages.split_audio, prepared)
    texts = [_run(stages.transcribe_chunk, i, n, len(items)) for n, i in enumerate(items)]
    notes = [_run(stages.summarize_chunk, t, n, len(texts)) for n, t in enumerate(texts)]
    return _run(stages.merge_notes, notes)


def _sentences_of(result: dict[str, Any]) -> list[str]:
    from actors.providers.summarize import sentences

    found = sentences(result["summary"])
    for section in result["sections"]:
        found += sentences(section["content"])
    return found + list(result["key_takeaways"])


def _key(text: str) -> str:
    return " ".join(_normal_words(text))


def score(lecture: Lecture, result: dict[str, Any]) -> dict[str, Any]:
    from conveyor.render import notes_markdown

    markdown = notes_markdown(result)
    used = [t for t in lecture.glossary if t.lower() in lecture.text.lower()]
    spelled = [t for t in used if t in markdown or (t.islower() and t.capitalize() in markdown)]
    expected = {_key(t): words for t, words in lecture.definitions.items()}
    given = [(_key(d["term"]), d["definition"].lower()) for d in result["definitions"]]

    def right(term: str, definition: str) -> bool:
        words = expected.get(term) or expected.get(term.rstrip("s")) or expected.get(term + "s")
        if not words:
            return False
        return all(w in definition for w in words)

    correct = [t for t, d in given if right(t, d)]
    reversed_ = [t for t, d in given if t not in expected and any(e in _key(d) for e in expected)]
    sentences = [_key(s) for s in _sentences_of(result)]
    duplicates = len(sentences) - len(set(sentences))
    return {
        "lecture": lecture.name,
        "wer": round(word_error_rate(lecture.text, result["transcript"]), 4),
        "glossary_used": len(used), "glossary_spelled": len(spelled),
        "misspelled": sorted(set(used) - set(spelled)),
        "definitions_expected": len(expected), "definitions_found": len(set(correct)),
        "definitions_given": len(given), "definitions_right": len(correct), "reversed": reversed_,
        "duplicates": duplicates,
        "bad_headings": [s["heading"] for s in result["sections"] if _BAD_HEADING.search(s["heading"])],
        "headings": [s["heading"] for s in result["sections"]],
        "takeaways": result["key_takeaways"],
        "definitions": [f"{d['term']}: {d['definition']}" for d in result["definitions"]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-glossary", action="store_true", help="Leave the glossary out of the input.")
    parser.add_argument("--only", default=None, help="One lecture by name.")
    parser.add_argument("--json", action="store_true", help="Print every score as JSON.")
    args = parser.parse_args(argv)
    from conveyor.config import configure, load_settings

    with tempfile.TemporaryDirectory() as files:
        configure(load_settings({**os.environ, "STORAGE_URL": f"file://{files}"}))
        scores = []
        for lecture in LECTURES:
            if args.only and lecture.name != args.only:
                continue
            audio, seconds = audio_for(lecture)
            result = notes_for(audio, None if args.no_glossary else lecture.glossary)
            scores.append({"seconds": seconds, **score(lecture, result)})
    if args.json:
        print(json.dumps(scores, indent=2))
    words = sum(len(_normal_words(lec.text)) for lec in LECTURES if not args.only or lec.name == args.only)
    total_errors = sum(s["wer"] * len(_normal_words(next(lec for lec in LECTURES
                                                         if lec.name == s["lecture"]).text)) for s in scores)
    given = sum(s["definitions_given"] for s in scores)
    print(f"{'lecture':<11} {'s':>5} {'WER':>6} {'spelled':>8} {'defs found':>10} {'right/given':>11} "
          f"{'reversed':>8} {'dup':>4} {'bad head':>8}")
    for s in scores:
        print(f"{s['lecture']:<11} {s['seconds']:5.0f} {s['wer']:6.1%} {s['glossary_spelled']:>3}/{s['glossary_used']:<4} "
              f"{s['definitions_found']:>5}/{s['definitions_expected']:<4} {s['definitions_right']:>5}/"
              f"{s['definitions_given']:<5} {len(s['reversed']):>8} {s['duplicates']:>4} {len(s['bad_headings']):>8}")
    print(f"{'total':<11} {sum(s['seconds'] for s in scores):5.0f} {total_errors / max(1, words):6.1%} "
          f"{sum(s['glossary_spelled'] for s in scores):>3}/{sum(s['glossary_used'] for s in scores):<4} "
          f"{sum(s['definitions_found'] for s in scores):>5}/{sum(s['definitions_expected'] for s in scores):<4} "
          f"{sum(s['definitions_right'] for s in scores):>5}/{given:<5} "
          f"{sum(len(s['reversed']) for s in scores):>8} {sum(s['duplicates'] for s in scores):>4} "
          f"{sum(len(s['bad_headings']) for s in scores):>8}")
    print(f"definition precision {sum(s['definitions_right'] for s in scores) / max(1, given):.0%}, "
          f"term recall {sum(s['definitions_found'] for s in scores) / max(1, sum(s['definitions_expected'] for s in scores)):.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
