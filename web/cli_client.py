"""The ``conveyor`` commands that use a running service through :class:`conveyor.client.Client`."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import click

from conveyor.client import APIError, Client
from conveyor.config import client_settings
from conveyor.render import readable
from conveyor.statuses import TERMINAL

#: The JSON Schema ``format`` of a file input (as :data:`pipelines.catalog.inputs.FILE_FORMAT`).
FILE_FORMAT = "conveyor-file"


def make_client() -> Client:
    """A client for ``CONVEYOR_URL`` with ``CONVEYOR_TOKEN``."""
    given = client_settings()
    if not given.token:
        raise click.ClickException("set CONVEYOR_TOKEN to your token (`conveyor users create NAME` prints one)")
    return Client(given.service_url, given.token)


#: The longest value that is looked up as a local file name.
_MAX_PATH = 4096


def input_fields(client: Client, pipeline: str) -> dict[str, str]:
    """The kind of each input field of ``pipeline``: ``file``, ``string``, ``list`` or ``other``
    (empty when the pipeline is unknown or declares no fields: the server then says what is wrong)."""
    try:
        described = next((p for p in client.pipelines() if p["name"] == pipeline), None)
    except APIError as exc:
        if exc.status == 0:
            raise
        return {}
    kinds: dict[str, str] = {}
    for name, schema in ((described or {}).get("input_schema") or {}).get("properties", {}).items():
        options = [schema, *schema.get("anyOf", [])]
        if any(o.get("format") == FILE_FORMAT for o in options):
            kinds[name] = "file"
        elif any(o.get("type") == "array" for o in options):
            kinds[name] = "list"
        elif any(o.get("type") == "string" for o in options) and not any(
                o.get("type") in ("number", "integer", "boolean", "object") for o in options):
            kinds[name] = "string"
        else:
            kinds[name] = "other"
    return kinds


def _is_local_file(raw: str) -> bool:
    if not raw or len(raw) > _MAX_PATH or "\n" in raw or "\0" in raw or raw.startswith(("http://", "https://")):
        return False
    try:
        return Path(raw).is_file()
    except (OSError, ValueError):  # a name too long for the file system, say
        return False


def _upload(client: Client, source: Path | bytes, name: str) -> str:
    try:
        if isinstance(source, bytes):
            return str(client.upload(io.BytesIO(source), filename=name)["ref"])
        return str(client.upload(source)["ref"])
    except APIError as exc:
        if exc.status == 0:
            raise
        raise click.ClickException(f"{name} was not uploaded: {exc}") from None


def _typed(raw: str, kind: str | None) -> Any:
    if kind == "string":
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        if kind == "list":
            return [part.strip() for part in raw.split(",") if part.strip()]
        return raw


def parse_value(raw: str, client: Client, kind: str | None = None) -> Any:
    """A ``key=value`` value for a field of ``kind`` (see :func:`input_fields`; None when unknown).

    ``@path`` reads a file: uploaded for a file field or an undeclared one, its text for any other
    (parsed as for a plain value). ``@-`` reads standard input the same way. A plain value is uploaded
    only when the field is a file field and the value names an existing file; otherwise it is kept as
    text for a text field, or parsed as JSON when it is JSON (a list field also takes ``a,b,c``).
    """
    if raw.startswith("@"):
        name = raw[1:]
        if name == "-":
            data = sys.stdin.buffer.read()
            if kind in ("file", None):
                return _upload(client, data, "stdin")
            return _typed(data.decode("utf-8", errors="replace"), kind)
        path = Path(name)
        if not _is_local_file(name):
            raise click.BadParameter(f"no such file: {path}")
        if kind in ("file", None):
            return _upload(client, path, str(path))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read {path} as text: {exc}") from None
        return _typed(text, kind)
    if kind == "file" and _is_local_file(raw):
        return _upload(client, Path(raw), raw)
    return _typed(raw, kind)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _fail(exc: APIError) -> click.ClickException:
    return click.ClickException(str(exc))


def follow(client: Client, job: dict[str, Any]) -> dict[str, Any]:
    """Show the job's progress until it ends; returns the finished job.

    In a terminal, a progress bar with the step text; otherwise one line per change of step.
    """
    if not sys.stdout.isatty():
        last = {"step": None}

        def line(current: dict[str, Any]) -> None:
            step = current.get("step") or current["status"]
            if step != last["step"]:
                last["step"] = step
                click.echo(f"{float(current.get('progress') or 0):5.1f}%  {step}")

        return client.wait(job["id"], progress=line)

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


def _json_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON ({exc})") from None


def _status_lines(job: dict[str, Any]) -> list[str]:
    eta = f", about {int(job['eta_seconds'])} s left" if job.get("eta_seconds") else ""
    lines = [f"{job['id']}  {job['pipeline']}  {job['status']}  {job['progress']:.0f}%{eta}",
             f"step: {job.get('step') or '-'}"]
    if job.get("metadata") is not None:
        lines.append(f"metadata: {json.dumps(job['metadata'], ensure_ascii=False)}")
    for stage in job.get("stages") or []:
        items = stage.get("items") or {}
        counts = f"  items {items['completed']}/{items['total']} done, {items['failed']} failed" if items else ""
        lines.append(f"  {stage['name']:<14} {stage['status']:<11} {stage['progress']:5.1f}%{counts}")
    if job.get("error"):
        error = job["error"]
        lines.append(f"error at {error.get('stage')}: {error.get('code')}: {error.get('message')}")
    for item_error in job.get("errors") or []:
        lines.append(f"tolerated: {json.dumps(item_error)}")
    return lines + _warning_lines(job)


def _warning_lines(job: dict[str, Any]) -> list[str]:
    return [f"warning at {w.get('stage')}: {w.get('code')}: {w.get('message')}" for w in job.get("warnings") or []]


def register(main: click.Group) -> None:
    """Add the client commands to the ``conveyor`` group."""

    @main.command(context_settings={"ignore_unknown_options": False})
    @click.argument("pipeline")
    @click.argument("values", nargs=-1)
    @click.option("--wait", is_flag=True, help="Show progress until the job ends, then print its result.")
    @click.option("--json", "as_json", is_flag=True, help="With --wait: print the result as raw JSON.")
    @click.option("--project", "project_id", default=None, help="A project id to group jobs.")
    @click.option("--webhook", "webhook_url", default=None, help="https:// URL told when the job ends.")
    @click.option("--idempotency-key", default=None, help="Repeat-safe submission key.")
    @click.option("--metadata", default=None, callback=_json_option,
                  help='JSON kept beside the job and returned unchanged (at most 4 KB), e.g. \'{"person_name": "Ada"}\'.')
    def submit(pipeline: str, values: tuple[str, ...], wait: bool, as_json: bool, project_id: str | None,
               webhook_url: str | None, idempotency_key: str | None, metadata: Any) -> None:
        """Start a PIPELINE job from key=value inputs.

        A value is text, or JSON when it parses as JSON. ``key=@path`` reads a file: uploaded for a file
        field, its text for a text field; ``key=@-`` reads standard input. A plain value that names an
        existing file is uploaded when the field is a file field. A list field takes ``a,b,c``.
        """
        with make_client() as client:
            kinds = input_fields(client, pipeline)
            data: dict[str, Any] = {}
            for pair in values:
                key, sep, raw = pair.partition("=")
                if not sep or not key:
                    raise click.BadParameter(f"{pair[:80]!r} is not key=value")
                data[key] = parse_value(raw, client, kinds.get(key))
            try:
                job = client.submit(pipeline, data, project_id=project_id, webhook_url=webhook_url,
                                    idempotency_key=idempotency_key, metadata=metadata)
                if not wait:
                    click.echo(f"Started {pipeline} job (status {job['status']}); its id:")
                    click.echo(job["id"])
                    return
                click.echo(f"Started {pipeline} job {job['id']}")
                done = follow(client, job)
                if done["status"] != "completed":
                    click.echo("\n".join(_status_lines(done)), err=True)
                    raise click.ClickException(f"job {done['id']} {done['status']}")
                for line in _warning_lines(done):
                    click.echo(line, err=True)
                if as_json:
                    _echo_json(done["result"])
                else:
                    click.echo(readable(done["result"], client.base_url))
            except APIError as exc:
                raise _fail(exc) from None

    @main.command()
    @click.argument("job_id")
    @click.option("--json", "as_json", is_flag=True, help="Print the job JSON.")
    def status(job_id: str, as_json: bool) -> None:
        """Show a job (its id, or 8 or more of its first characters): status, progress, stages, error, result."""
        with make_client() as client:
            try:
                job = client.get(client.resolve(job_id))
            except APIError as exc:
                raise _fail(exc) from None
        if as_json:
            _echo_json(job)
            return
        click.echo("\n".join(_status_lines(job)))
        if job.get("result") is not None:
            click.echo("result:")
            click.echo(readable(job["result"], client_settings().url or ""))

    @main.command()
    @click.option("--status", "status_filter", default=None, help="pending, processing, completed, ...")
    @click.option("--pipeline", default=None)
    @click.option("--project", "project_id", default=None)
    @click.option("--limit", type=int, default=20, show_default=True)
    @click.option("--metadata", "metadata_pairs", multiple=True, metavar="KEY=VALUE",
                  help="Only jobs whose metadata has this string value at KEY (repeatable).")
    def jobs(status_filter: str | None, pipeline: str | None, project_id: str | None, limit: int,
             metadata_pairs: tuple[str, ...]) -> None:
        """List your jobs, newest first."""
        metadata = {}
        for pair in metadata_pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{pair[:80]!r} is not KEY=VALUE", param_hint="--metadata")
            metadata[key] = value
        with make_client() as client:
            try:
                page = client.list(status=status_filter, pipeline=pipeline, project_id=project_id, limit=limit,
                                   metadata=metadata)
            except APIError as exc:
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
                    job = getattr(client, action)(client.resolve(job_id))
                except APIError as exc:
                    raise _fail(exc) from None
            click.echo(f"{job['id']} {job['status']}" + ("" if job["status"] in TERMINAL else
                                                          f" ({job.get('step') or ''})"))

        command.__doc__ = {"retry": "Retry a failed or canceled job from the stage that did not finish.",
                           "cancel": "Cancel a pending or processing job."}[action]
        return command

    main.command("retry")(_transition("retry"))
    main.command("cancel")(_transition("cancel"))
