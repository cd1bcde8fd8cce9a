"""``conveyor demo`` (``make demo``): lecture notes from the bundled sample, in embedded mode, end to end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "lecture.mp3"
TERMINAL = ("completed", "failed", "canceled")


def _print_notes(result: dict[str, Any]) -> None:
    click.secho(f"\n{result['title']}", bold=True)
    click.echo(f"\n{result['summary']}\n")
    for section in result.get("sections", []):
        click.secho(section["heading"], bold=True)
        click.echo(f"  {section['content']}\n")
    if result.get("key_takeaways"):
        click.secho("Key takeaways", bold=True)
        for takeaway in result["key_takeaways"]:
            click.echo(f"  - {takeaway}")
    if result.get("definitions"):
        click.secho("\nDefinitions", bold=True)
        for item in result["definitions"]:
            click.echo(f"  {item['term']}: {item['definition']}")


def run_demo(*, threads: int, sample: Path = SAMPLE) -> int:
    """Run ``lecture_notes`` on ``sample`` with worker threads in this process; returns an exit code."""
    from pipelines.files import save_upload
    from pipelines.jobs import get_job, start_job
    from pipelines.schema import upgrade
    from pipelines.users import create_user
    from web.devserver import start_embedded_worker

    upgrade()
    worker = start_embedded_worker(threads)
    try:
        user = create_user("demo")
        with sample.open("rb") as stream:
            upload = save_upload(stream, filename=sample.name, user_id=user.id, max_bytes=50 * 1024 * 1024)
        job = start_job(pipeline="lecture_notes", input={"audio": f"file:{upload['id']}"}, user_id=user.id)
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
    _print_notes(job["result"])
    click.echo("\nSee it in the dashboard: run `make dev`, then open")
    click.echo(f"  http://127.0.0.1:5000/#token={user.token}")
    return 0
