"""``conveyor demo`` (``make demo``): lecture notes from the bundled sample, in embedded mode, end to end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from conveyor.render import notes_markdown
from conveyor.statuses import TERMINAL

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "lecture.mp3"


def run_demo(*, threads: int, sample: Path = SAMPLE) -> int:
    """Run ``lecture_notes`` on ``sample`` with worker threads in this process; returns an exit code."""
    from pipelines.services.database import upgrade
    from pipelines.services.files import save_upload
    from pipelines.services.jobs import get_job, start_job
    from pipelines.services.users import user_for_token
    from web.devserver import sign_in_link, sign_in_token, start_embedded_worker

    upgrade()
    worker = start_embedded_worker(threads)
    try:
        token = sign_in_token("demo")  # the same demo user, and the same token, on every run
        user_id = user_for_token(token)
        assert user_id is not None
        with sample.open("rb") as stream:
            upload = save_upload(stream, filename=sample.name, user_id=user_id, max_bytes=50 * 1024 * 1024)
        job = start_job(pipeline="lecture_notes", input={"audio": f"file:{upload['id']}"}, user_id=user_id)
        click.echo(f"Started job {job['id']} (lecture_notes on {sample.name})")
        state = {"step": job["step"] or ""}
        bar: Any
        with click.progressbar(length=100, label="lecture_notes", item_show_func=lambda _: state["step"],
                               width=30) as bar:
            shown = 0.0
            while job["status"] not in TERMINAL:
                time.sleep(0.3)
                job = get_job(job["id"])
                state["step"] = job["step"] or ""
                bar.update(int(job["progress"]) - int(shown), current_item=state["step"])
                shown = int(job["progress"])
    finally:
        worker.stop()
    if job["status"] != "completed":
        click.secho(f"The job {job['status']}: {job['error']}", fg="red", err=True)
        return 1
    click.echo()
    click.echo(notes_markdown(job["result"]))
    click.echo("\nSee it in the dashboard: run `make dev`, then open")
    click.echo(f"  {sign_in_link(token)}")
    return 0
