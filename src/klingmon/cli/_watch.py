"""``watch`` and ``worker``: run the engine, with a live view for people."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import typer
from rich.console import Group
from rich.live import Live

from klingmon._clock import to_ms
from klingmon.api._models import TERMINAL, TaskStatus
from klingmon.cli._app import app
from klingmon.cli._context import Context, emit_json, get_context, run_async
from klingmon.cli._hook_options import (
    ForwardSecret,
    ForwardUrl,
    HookCommand,
    HookEnv,
    Notify,
)
from klingmon.cli._render import EXPIRY_WARNING_S, batch_progress, expiring_line
from klingmon.engine._notify import install_hooks
from klingmon.errors import NotFoundError
from klingmon.policy import Phase

if TYPE_CHECKING:
    from rich.console import RenderableType

    from klingmon.engine import Monitor
    from klingmon.store import BatchRow

__all__ = ["batch_summary", "watch_batch"]

_FAILED = (TaskStatus.FAILED, TaskStatus.REJECTED)


def batch_summary(monitor: Monitor, batch: BatchRow) -> dict[str, object]:
    counts = monitor.store.count_by_status(batch.id)
    return {
        "batch": batch.name,
        "total": sum(counts.values()),
        "counts": {s.value: n for s, n in counts.items() if n},
        "done": all(s in TERMINAL for s, n in counts.items() if n),
        "failed": sum(counts.get(s, 0) for s in _FAILED),
    }


def _eta(monitor: Monitor, batch: BatchRow) -> float | None:
    """Remaining time from the learned durations and the account's slots."""
    rows = monitor.store.tasks(batch.id)
    waiting = sum(1 for r in rows if r.status == TaskStatus.QUEUED)
    active = [
        r for r in rows if r.status not in TERMINAL and r.status != TaskStatus.QUEUED
    ]
    if not waiting and not active:
        return None
    engine = monitor.engine()
    key = rows[0].key
    per_task = engine.book.get(key, Phase.SUBMITTED).quantile(0.5) + engine.book.get(
        key, Phase.PROCESSING
    ).quantile(0.5)
    slots = max(1, monitor.settings.slots)
    rounds = (waiting + len(active)) / slots
    return rounds * per_task


def _view(monitor: Monitor, batch: BatchRow) -> RenderableType:
    rows = monitor.store.tasks(batch.id)
    counts: dict[TaskStatus, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    failures = [r for r in rows if r.status in _FAILED]
    view = batch_progress(
        batch.name,
        counts,
        eta=_eta(monitor, batch),
        stuck=sum(1 for r in rows if r.stuck and r.status not in TERMINAL),
        timed_out=sum(1 for r in rows if r.watch_timeout and r.status not in TERMINAL),
        failures=failures,
    )
    # downloads: warn when results not yet downloaded are deleted soon
    files = monitor.store.download_counts(
        batch.id,
        now_ms=to_ms(monitor.clock.now()),
        within_ms=to_ms(EXPIRY_WARNING_S),
    )
    warning = expiring_line(files["expiring"])
    return view if warning is None else Group(view, warning)


async def watch_batch(
    context: Context, monitor: Monitor, batch: BatchRow, *, live: bool
) -> dict[str, object]:
    """Run the engine until the batch is done, redrawing the live view meanwhile."""
    runner = asyncio.create_task(monitor.run(batch=batch.id), name="klingmon-engine")
    if live and context.console.is_terminal:
        with Live(
            _view(monitor, batch), console=context.console, refresh_per_second=4
        ) as display:
            while not runner.done():
                await asyncio.wait({runner}, timeout=0.5)
                display.update(_view(monitor, batch))
    await runner
    if live and not context.console.is_terminal:
        context.console.print(_view(monitor, batch))
    return batch_summary(monitor, batch)


@app.command()
def watch(
    ctx: typer.Context,
    batch: str | None = typer.Argument(
        None, help="Batch name or id (default: newest)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON summary at the end."
    ),
) -> None:
    """Run the engine until the batch is done, with a live table; 5 if any failed."""
    context = get_context(ctx)
    monitor = context.monitor(context.client())
    row = _pick_batch(monitor, batch)
    summary = run_async(
        _watch_and_close(context, monitor, row, live=not as_json),
        stop=monitor.stop,
        resume=row.name,
    )
    if as_json:
        emit_json(summary)
    if summary["failed"]:
        raise typer.Exit(5)
    if not summary["done"]:
        raise typer.Exit(130)


async def _watch_and_close(
    context: Context, monitor: Monitor, batch: BatchRow, *, live: bool
) -> dict[str, object]:
    try:
        return await watch_batch(context, monitor, batch, live=live)
    finally:
        with contextlib.suppress(Exception):
            await monitor.client.aclose()


def _pick_batch(monitor: Monitor, ref: str | None) -> BatchRow:
    if ref is None:
        batches = monitor.store.batches()
        if not batches:
            raise NotFoundError(
                "no batches yet; submit one with `klingmon submit FILE`"
            )
        return batches[-1]
    row = monitor.store.batch(int(ref) if ref.isdigit() else ref)
    if row is None:
        raise NotFoundError(f"no batch {ref!r}; `klingmon status` lists the batches")
    return row


@app.command()
def worker(
    ctx: typer.Context,
    hook_command: HookCommand = None,
    forward_url: ForwardUrl = None,
    forward_secret: ForwardSecret = None,
    notify: Notify = None,
    hook_env: HookEnv = None,
) -> None:
    """Run the engine for every batch until SIGINT/SIGTERM (no display).

    Several workers may share one PostgreSQL store: they split the work through
    leases, never exceed the account's slots between them, and take over from one
    that dies.
    """
    context = get_context(ctx)
    monitor = context.monitor(context.client())
    install_hooks(
        monitor.hooks,
        store=monitor.store,
        command=hook_command,
        forward_url=forward_url,
        forward_secret=forward_secret,
        notify=notify or (),
        hook_env=hook_env or (),
    )

    async def run() -> None:
        try:
            await monitor.run(forever=True)
        finally:
            await monitor.client.aclose()

    run_async(run(), stop=monitor.stop)
