"""A complete pipeline of your own: split a text into lines, count words per line in parallel, sum."""

from pydantic import BaseModel

from conveyor.sdk import Pipeline, current_stage, fan_out, stage, stage_actor


class WordCountInput(BaseModel):
    text: str


@stage_actor(input=WordCountInput, retries=2, time_limit=30)
def split_lines(request: WordCountInput) -> list[str]:
    return [line for line in request.text.splitlines() if line.strip()]


@stage_actor(retries=2, time_limit=30)
def count_words(line: str) -> int:
    ctx = current_stage()
    ctx.progress(1.0, f"Counting line {(ctx.item or 0) + 1} of {ctx.items_total}")
    return len(line.split())


@stage_actor(time_limit=30)
def add_up(counts: list[int]) -> dict:
    return {"lines": len(counts), "words": sum(counts)}


word_count = Pipeline("word_count", [stage(split_lines), fan_out(count_words, concurrency=4), stage(add_up)],
                      input_model=WordCountInput, description="Counts the words of a text, line by line.")
