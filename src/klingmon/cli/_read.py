"""Reading commands: ``status``, ``show``, ``report``, ``stuck``, ``export``."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from klingmon._clock import to_ms
from klingmon.cli._account import packs_json
from klingmon.cli._app import app
from klingmon.cli._context import Context, emit_json, get_context
from klingmon.cli._pools import show_pools as show_pools_of
from klingmon.cli._render import (
    batches_table,
    report_view,
    task_view,
    tasks_table,
    workers_table,
)
from klingmon.cli._spend import ask_account, say_packs
from klingmon.cli._unsent import unsent_lines
from klingmon.cli._watch import _pick_batch
from klingmon.domain import RESULT_KINDS, TERMINAL
from klingmon.errors import NotFoundError

if TYPE_CHECKING:
    from klingmon.store import EventRow, Store, TaskRow

__all__ = ["task_record"]

# Columns of an export, in order; never the request's secrets (there are none in a
# body, and credentials are never stored).
_EXPORT_FIELDS = (
    "id",
    "batch",
    "priority",
    "account",
    "seq",
    "endpoint",
    "external_task_id",
    "task_id",
    "status",
    "status_msg",
    "prompt",
    "model_name",
    "mode",
    "duration",
    "units",
    "cash",
    "currency",
    "package_type",
    "list_price",
    "cash_type",
    "quoted_units",
    "spend",
    "spend_units",
    "created_ms",
    "submitted_ms",
    "finished_ms",
    "stuck",
    "watch_timeout",
    "learned_via",
    "urls",
)


def task_record(row: TaskRow, batch_name: str = "") -> dict[str, Any]:
    """A task as plain JSON-ready data."""
    data = {
        f.name: getattr(row, f.name)
        for f in dataclasses.fields(row)
        if f.name not in {"lease_owner", "lease_until_ms"}
    }
    data["status"] = row.status.value
    data["batch"] = batch_name
    # The cost record, flat beside ``units`` (CSV columns) and whole (JSON).
    cost = dataclasses.asdict(row.cost) if row.cost is not None else {}
    data["cost"] = cost or None
    for name in ("cash", "currency", "package_type", "list_price", "cash_type"):
        data[name] = cost.get(name)
    result = row.result or {}
    data["urls"] = [
        i["url"]
        for key in RESULT_KINDS
        for i in result.get(key) or []
        if isinstance(i, dict) and i.get("url")
    ]
    return data


def _event_record(event: EventRow) -> dict[str, Any]:
    return dataclasses.asdict(event)


@app.command()
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    show_workers: bool = typer.Option(
        False, "--workers", help="Workers, their heartbeats and leases instead."
    ),
    show_pools: bool = typer.Option(
        False,
        "--pools",
        help="The concurrency pools (model x pack) instead: slots used, limits.",
    ),
    show_account: bool = typer.Option(
        False,
        "--account",
        help="The resource packs instead, asked of Kling now (GET /account/costs) "
        "when the credentials allow, else as last seen.",
    ),
) -> None:
    """Every batch with its tasks counted by status, then the resource packs as
    last seen (or, --workers, the fleet; --account, the packs; --pools, the
    concurrency pools)."""
    context = get_context(ctx)
    store = context.store()
    if show_workers:
        _workers(context, store, as_json=as_json)
        return
    if show_account:
        _account(context, as_json=as_json)
        return
    if show_pools:
        show_pools_of(context, store, as_json=as_json)
        return
    rows = [(b, store.tasks.count_by_status(b.id)) for b in store.tasks.batches()]
    if as_json:
        emit_json(
            [
                {
                    "batch": b.name,
                    "id": b.id,
                    "created_ms": b.created_ms,
                    "priority": b.priority,
                    "total": sum(c.values()),
                    "counts": {s.value: n for s, n in c.items() if n},
                    "done": all(s in TERMINAL for s, n in c.items() if n),
                    # Only for a held batch: awaiting_approval, paused_budget.
                    **({"state": b.state} if b.state else {}),
                }
                for b, c in rows
            ]
        )
        return
    if not rows:
        context.err.print("No batches yet. Submit one with `klingmon submit FILE`.")
    else:
        context.console.print(batches_table(rows))
        for line in unsent_lines(store):
            context.err.print(line, markup=False, highlight=False, soft_wrap=True)
    figures = context.runtime().account.latest()
    if figures is not None:
        say_packs(context, figures)


def _account(context: Context, *, as_json: bool) -> None:
    """The packs, fresh when Kling answers, else as last seen (and why)."""
    figures, why = ask_account(context)
    if figures is None:
        figures = context.runtime().account.latest()
    if as_json:
        found = packs_json(figures, to_ms(context.runtime().clock.now()))
        emit_json(found | ({"error": why} if why else {}))
        return
    if why is not None:
        context.err.print(
            f"Kling not asked: {why}", markup=False, highlight=False, soft_wrap=True
        )
    if figures is None:
        context.err.print(
            "No resource packs known yet: no GET /account/costs has answered."
        )
        return
    say_packs(context, figures)


def _workers(context: Context, store: Store, *, as_json: bool) -> None:
    now_ms = int(time.time() * 1000)
    rows = store.fleet.workers(now_ms)
    leases = store.fleet.lease_counts(now_ms)
    if as_json:
        emit_json(
            [{**dataclasses.asdict(w), "leases": leases.get(w.owner, 0)} for w in rows]
        )
        return
    if not rows:
        context.err.print("No worker has run against this store in the last day.")
        return
    context.console.print(workers_table(rows, leases, now_ms))


@app.command()
def show(
    ctx: typer.Context,
    task: str = typer.Argument(
        ..., help="Local id, Kling task_id or external_task_id."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """One task and its timeline from the event log."""
    context = get_context(ctx)
    store = context.store()
    row = store.tasks.task(int(task) if task.isdigit() and len(task) < 12 else task)
    if row is None and task.isdigit():
        row = store.tasks.task(task)
    if row is None:
        raise NotFoundError(f"no task {task!r}; `klingmon status` lists the batches")
    events = store.outbox.events(task_id=row.id)
    if as_json:
        batch = store.tasks.batch(row.batch_id)
        record = task_record(row, batch.name if batch else "")
        record["events"] = [_event_record(e) for e in events]
        emit_json(record)
        return
    context.console.print(task_view(row, events))


@app.command()
def report(
    ctx: typer.Context,
    batch: str | None = typer.Argument(None, help="Batch (default: newest)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Counts, times in queue and processing, failure reasons, units, requests."""
    context = get_context(ctx)
    monitor = context.monitor()
    row = _pick_batch(monitor, batch)
    data = monitor.store.reports.report(row.id)
    spent = monitor.store.spend.summary(row.id)
    if as_json:
        record = dataclasses.asdict(data)
        record["by_status"] = {s.value: n for s, n in data.by_status.items() if n}
        record["batch"] = row.name
        record["priority"] = row.priority
        record["spend"] = dataclasses.asdict(spent) | {
            "state": row.state,
            "max_units": row.max_units,
        }
        emit_json(record)
        return
    context.console.print(report_view(row.name, data, spent=spent, batch=row))


@app.command()
def stuck(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Tasks flagged stuck or past their deadline that are still running."""
    context = get_context(ctx)
    store = context.store()
    rows = [
        r
        for r in store.tasks.tasks()
        if (r.stuck or r.watch_timeout) and r.status not in TERMINAL
    ]
    if as_json:
        emit_json([task_record(r) for r in rows])
        return
    if not rows:
        context.err.print("No stuck tasks.")
        return
    context.console.print(tasks_table(rows, title="Stuck or past deadline"))


@app.command()
def export(
    ctx: typer.Context,
    batch: str | None = typer.Argument(None, help="Batch (default: every batch)."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or json."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="File (default stdout)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
) -> None:
    """Every task as CSV or JSON, for spreadsheets and scripts."""
    context = get_context(ctx)
    if as_json:
        fmt = "json"
    monitor = context.monitor()
    store = monitor.store
    if fmt not in {"csv", "json"}:
        raise typer.BadParameter("use csv or json", param_hint="--format")
    batches = [_pick_batch(monitor, batch)] if batch else store.tasks.batches()
    records = [
        task_record(t, b.name) | {"priority": b.priority}
        for b in batches
        for t in store.tasks.tasks(b.id)
    ]
    out = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        if fmt == "json":
            json.dump(records, out, indent=2, default=str)
            out.write("\n")
        else:
            writer = csv.DictWriter(
                out, fieldnames=_EXPORT_FIELDS, extrasaction="ignore"
            )
            writer.writeheader()
            for record in records:
                writer.writerow({**record, "urls": " ".join(record["urls"])})
    finally:
        if output:
            out.close()
    if output:
        context.err.print(f"Wrote {len(records)} tasks to {output}")
