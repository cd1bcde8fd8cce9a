"""The ``conveyor`` commands that use a running service through :class:`conveyor.client.Client`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from conveyor.client import TERMINAL, Client, ConveyorError
from conveyor.config import settings


def make_client() -> Client:
    """A client for ``CONVEYOR_URL`` with ``CONVEYOR_TOKEN``."""
    token = os.environ.get("CONVEYOR_TOKEN")
    if not token:
        raise click.ClickException("set CONVEYOR_TOKEN to your token (`conveyor users create NAME` prints one)")
    url = os.environ.get("CONVEYOR_URL") or f"http://127.0.0.1:{settings().port}"
    return Client(url, token)


def parse_value(raw: str, client: Client) -> Any:
    """A ``key=value`` value: ``@path`` or an existing file is uploaded, JSON is parsed, else a string."""
    if raw.startswith("@") or (raw and not raw.startswith(("http://", "https://")) and Path(raw).is_file()):
        path = Path(raw[1:] if raw.startswith("@") else raw)
        if not path.is_file():
            raise click.BadParameter(f"no such file: {path}")
        try:
            return client.upload(path)["ref"]
        except ConveyorError as exc:
            raise click.ClickException(f"{path} was not uploaded: {exc}") from None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _fail(exc: ConveyorError) -> click.ClickException:
    return click.ClickException(str(exc))


def follow(client: Client, job: dict[str, Any]) -> dict[str, Any]:
    """Show a progress bar with the step text until the job ends; returns the finished job."""
    step = {"text": job.get("step") or ""}
    done = {"percent": 0}
    bar: Any
    with click.progressbar(length=100, label=f"{job['pipeline']} {job['id'][:8]}",
                           item_show_func=lambda _: step["text"], show_percent=True) as bar:

        def update(current: dict[str, Any]) -> None:
            step["text"] = (current.get("step") or "")[:60]
            progress = int(current.get("progress") or 0)
            bar.update(max(0, progress - done["percent"]), current_item=step["text"])
            done["percent"] = max(done["percent"], progress)

        return client.wait(job["id"], progress=update)


def _status_lines(job: dict[str, Any]) -> list[str]:
    eta = f", about {int(job['eta_seconds'])} s left" if job.get("eta_seconds") else ""
    lines = [f"{job['id']}  {job['pipeline']}  {job['status']}  {job['progress']:.0f}%{eta}",
             f"step: {job.get('step') or '-'}"]
    for stage in job.get("stages") or []:
        items = stage.get("items") or {}
        counts = f"  items {items['completed']}/{items['total']} done, {items['failed']} failed" if items else ""
        lines.append(f"  {stage['name']:<14} {stage['status']:<11} {stage['progress']:5.1f}%{counts}")
    if job.get("error"):
        error = job["error"]
        lines.append(f"error at {error.get('stage')}: {error.get('code')}: {error.get('message')}")
    for item_error in job.get("errors") or []:
        lines.append(f"tolerated: {json.dumps(item_error)}")
    return lines


def register(main: click.Group) -> None:
    """Add the client commands to the ``conveyor`` group."""

    @main.command(context_settings={"ignore_unknown_options": False})
    @click.argument("pipeline")
    @click.argument("values", nargs=-1)
    @click.option("--wait", is_flag=True, help="Show progress until the job ends, then print its result.")
    @click.option("--project", "project_id", default=None, help="A project id to group jobs.")
    @click.option("--webhook", "webhook_url", default=None, help="https:// URL told when the job ends.")
    @click.option("--idempotency-key", default=None, help="Repeat-safe submission key.")
    def submit(pipeline: str, values: tuple[str, ...], wait: bool, project_id: str | None,
               webhook_url: str | None, idempotency_key: str | None) -> None:
        """Start a PIPELINE job from key=value inputs (local files are uploaded; values may be JSON)."""
        with make_client() as client:
            data: dict[str, Any] = {}
            for pair in values:
                key, sep, raw = pair.partition("=")
                if not sep or not key:
                    raise click.BadParameter(f"{pair!r} is not key=value")
                data[key] = parse_value(raw, client)
            try:
                job = client.submit(pipeline, data, project_id=project_id, webhook_url=webhook_url,
                                    idempotency_key=idempotency_key)
                if not wait:
                    click.echo(f"Started {pipeline} job (status {job['status']}); its id:")
                    click.echo(job["id"])
                    return
                done = follow(client, job)
            except ConveyorError as exc:
                raise _fail(exc) from None
        if done["status"] != "completed":
            click.echo("\n".join(_status_lines(done)), err=True)
            raise click.ClickException(f"job {done['id']} {done['status']}")
        _echo_json(done["result"])

    @main.command()
    @click.argument("job_id")
    @click.option("--json", "as_json", is_flag=True, help="Print the job JSON.")
    def status(job_id: str, as_json: bool) -> None:
        """Show a job: status, progress, stages, error and result."""
        with make_client() as client:
            try:
                job = client.get(job_id)
            except ConveyorError as exc:
                raise _fail(exc) from None
        if as_json:
            _echo_json(job)
            return
        click.echo("\n".join(_status_lines(job)))
        if job.get("result") is not None:
            click.echo("result:")
            _echo_json(job["result"])

    @main.command()
    @click.option("--status", "status_filter", default=None, help="pending, processing, completed, ...")
    @click.option("--pipeline", default=None)
    @click.option("--project", "project_id", default=None)
    @click.option("--limit", type=int, default=20, show_default=True)
    def jobs(status_filter: str | None, pipeline: str | None, project_id: str | None, limit: int) -> None:
        """List your jobs, newest first."""
        with make_client() as client:
            try:
                page = client.list(status=status_filter, pipeline=pipeline, project_id=project_id, limit=limit)
            except ConveyorError as exc:
                raise _fail(exc) from None
        for job in page["jobs"]:
            click.echo(f"{job['id']}  {job['created_at']}  {job['pipeline']:<16} {job['status']:<10} "
                       f"{job['progress']:5.1f}%  {job.get('step') or ''}")
        if not page["jobs"]:
            click.echo("no jobs")

    def _transition(action: str) -> Any:
        @click.argument("job_id")
        def command(job_id: str) -> None:
            with make_client() as client:
                try:
                    job = getattr(client, action)(job_id)
                except ConveyorError as exc:
                    raise _fail(exc) from None
            click.echo(f"{job['id']} {job['status']}" + ("" if job["status"] in TERMINAL else
                                                          f" ({job.get('step') or ''})"))

        command.__doc__ = {"retry": "Retry a failed or canceled job from the stage that did not finish.",
                           "cancel": "Cancel a pending or processing job."}[action]
        return command

    main.command("retry")(_transition("retry"))
    main.command("cancel")(_transition("cancel"))
