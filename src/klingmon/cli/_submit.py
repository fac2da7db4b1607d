"""``submit``, ``retry``, ``track`` and ``import``: commands that add work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from klingmon.cli._app import app
from klingmon.cli._context import emit_json, get_context, run_async
from klingmon.cli._watch import GiveUpOption, WatchPlan, _pick_batch, run_watch
from klingmon.engine import read_batch_file

__all__: list[str] = []


@app.command()
def submit(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., help=".txt (a prompt a line), .csv or .jsonl (a task a row)."
    ),
    batch: str | None = typer.Option(None, "--batch", "-b", help="Batch name."),
    endpoint: str = typer.Option(
        "text2video", "--endpoint", help="Endpoint for rows that name none."
    ),
    model_name: str | None = typer.Option(None, "--model-name", help="Default model."),
    mode: str | None = typer.Option(None, "--mode", help="Default mode: std or pro."),
    duration: str | None = typer.Option(None, "--duration", help="Default: 5 or 10."),
    aspect_ratio: str | None = typer.Option(None, "--aspect-ratio"),
    cfg_scale: float | None = typer.Option(None, "--cfg-scale"),
    negative_prompt: str | None = typer.Option(None, "--negative-prompt"),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        help="Seconds after which unfinished tasks are flagged; with --watch, "
        "the watch ends then too (exit 6, tasks stay tracked).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate only."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Watch until done."),
    give_up_after: float = GiveUpOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Store a batch from a file (all rows or none) and, with --watch, run it."""
    context = get_context(ctx)
    defaults: dict[str, Any] = {
        "model_name": model_name,
        "mode": mode,
        "duration": duration,
        "aspect_ratio": aspect_ratio,
        "cfg_scale": cfg_scale,
        "negative_prompt": negative_prompt,
    }
    rows = read_batch_file(file, defaults=defaults, endpoint=endpoint)
    if dry_run:
        if as_json:
            emit_json({"valid": True, "tasks": len(rows), "file": str(file)})
        else:
            context.err.print(f"{file}: {len(rows)} tasks, all valid (nothing stored)")
        return
    monitor = context.monitor()
    stored = monitor.submit((r.request for r in rows), batch=batch, timeout=timeout)
    if not watch:
        if as_json:
            emit_json({"batch": stored.name, "id": stored.id, "tasks": len(rows)})
        else:
            context.err.print(
                f"Stored batch [bold]{stored.name}[/] with {len(rows)} tasks; "
                f"run `klingmon watch {stored.name}` to send and watch them."
            )
        return
    # Only this batch is sent: other stored batches wait for their own watch.
    plan = WatchPlan(timeout=timeout, give_up_after=give_up_after)
    run_watch(context, stored, as_json=as_json, plan=plan)


@app.command()
def retry(
    ctx: typer.Context,
    batch: str = typer.Argument(..., help="The batch whose failures to resubmit."),
    name: str | None = typer.Option(None, "--name", help="Name of the new batch."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Resubmit failed and rejected tasks as a new batch linked to the old tasks."""
    context = get_context(ctx)
    monitor = context.monitor()
    old = _pick_batch(monitor, batch)
    new = monitor.retry(old.id, name=name)
    count = len(monitor.store.tasks(new.id))
    if as_json:
        emit_json(
            {"batch": new.name, "id": new.id, "tasks": count, "retry_of": old.name}
        )
    else:
        context.err.print(f"Stored batch [bold]{new.name}[/] retrying {count} tasks.")


@app.command()
def track(
    ctx: typer.Context,
    task_ids: list[str] = typer.Argument(..., help="Kling task ids to adopt."),
    endpoint: str = typer.Option("text2video", "--endpoint"),
    batch: str | None = typer.Option(None, "--batch", "-b"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Adopt tasks created elsewhere so they are watched and collected."""
    context = get_context(ctx)
    client = context.client()
    monitor = context.monitor(client)

    async def adopt() -> Any:
        try:
            return await monitor.track(endpoint, task_ids, batch=batch)
        finally:
            await client.aclose()

    row = run_async(adopt())
    if as_json:
        emit_json({"batch": row.name, "id": row.id, "tasks": len(task_ids)})
    else:
        context.err.print(
            f"Tracking {len(task_ids)} tasks in batch [bold]{row.name}[/]."
        )


@app.command("import")
def import_(
    ctx: typer.Context,
    endpoint: str = typer.Option("text2video", "--endpoint"),
    pages: int = typer.Option(1, "--pages", min=1, max=1000),
    batch: str | None = typer.Option(None, "--batch", "-b"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Adopt the account's recent tasks of an endpoint through its list pages."""
    context = get_context(ctx)
    client = context.client()
    monitor = context.monitor(client)

    async def adopt() -> Any:
        try:
            return await monitor.import_recent(endpoint, pages=pages, batch=batch)
        finally:
            await client.aclose()

    row = run_async(adopt())
    count = len(monitor.store.tasks(row.id))
    if as_json:
        emit_json({"batch": row.name, "id": row.id, "tasks": count})
    else:
        context.err.print(f"Imported {count} tasks into batch [bold]{row.name}[/].")
