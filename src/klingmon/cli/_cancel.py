"""``cancel``: drop tasks that were never sent; say so of those Kling already has.

Kling has no cancel. A task whose create may have reached Kling (``submitting``) or
that Kling holds is paid for and runs to its end, so it stays tracked; only tasks
still waiting in the queue become ``cancelled``, each with an event hooks hear of.
"""

from __future__ import annotations

import shlex
import time
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from klingmon._clock import to_ms
from klingmon.cli._app import app
from klingmon.cli._context import emit_json, get_context
from klingmon.errors import UsageError

if TYPE_CHECKING:
    from klingmon.store import BatchRow, Cancellation, Store, TaskRow

__all__: list[str] = []


def _resolve(store: Store, ref: str) -> list[int]:
    """Task ids and batch ids a reference names: a batch (name or id) or a task.

    A batch name wins, then a Kling ``task_id`` or ``external_task_id`` (Kling's ids
    are long digit strings), then a batch id.
    """
    batches = store.tasks.batches()
    named = next((b for b in batches if b.name == ref), None)
    if named is not None:
        return store.tasks.task_ids_of_batch(named.id)
    task = store.tasks.task(ref)
    if task is not None:
        return [task.id]
    by_id = next((b for b in batches if ref.isdigit() and b.id == int(ref)), None)
    if by_id is not None:
        return store.tasks.task_ids_of_batch(by_id.id)
    raise UsageError(
        f"no batch or task {ref!r}; `klingmon status` lists the batches, "
        "`klingmon export NAME` their tasks"
    )


def _names(store: Store, rows: list[TaskRow]) -> list[str]:
    batches: dict[int, BatchRow] = {b.id: b for b in store.tasks.batches()}
    return sorted({batches[r.batch_id].name for r in rows if r.batch_id in batches})


def _record(rows: list[TaskRow]) -> list[dict[str, object]]:
    return [
        {
            "id": r.id,
            "batch_id": r.batch_id,
            "external_task_id": r.external_task_id,
            "task_id": r.task_id,
            "status": r.status.value,
        }
        for r in rows
    ]


def _tasks(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


def _first_name(store: Store, rows: list[TaskRow]) -> str:
    """The first batch these tasks belong to, quoted for a `klingmon watch` hint."""
    return " ".join(shlex.quote(n) for n in _names(store, rows)[:1])


def _report(store: Store, done: Cancellation) -> list[str]:
    lines = []
    cancelled = [c.task for c in done.cancelled]
    if cancelled:
        lines.append(
            f"Cancelled {_tasks(len(cancelled))} of "
            f"{', '.join(_names(store, cancelled))}: "
            "never sent, nothing paid."
        )
    if done.sending:
        watch = _first_name(store, done.sending)
        lines.append(
            f"Not cancelled: {_tasks(len(done.sending))} whose create may already "
            f"have reached Kling; they stay tracked (`klingmon watch {watch}` looks "
            "them up before anything is sent again)."
        )
    if done.at_kling:
        watch = _first_name(store, done.at_kling)
        lines.append(
            f"Not cancelled: {_tasks(len(done.at_kling))} already at Kling, which has "
            f"no cancel; they finish, are paid for and stay tracked "
            f"(`klingmon watch {watch}` collects them)."
        )
    if done.finished:
        lines.append(f"Already finished: {_tasks(len(done.finished))}.")
    if not lines:
        lines.append("Nothing to cancel.")
    return lines


@app.command()
def cancel(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(
        ...,
        help="Batch names or ids, or tasks (Kling task_id or external_task_id).",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Cancel tasks not sent yet; those already at Kling stay tracked.

    Kling has no cancel: a task whose create may have reached it runs to its end.
    Every name is checked first: one unknown name cancels nothing (exit 2).
    """
    context = get_context(ctx)
    store = context.store()
    ids: dict[int, None] = {}  # in order, once each
    for ref in refs:
        ids.update(dict.fromkeys(_resolve(store, ref)))
    done = store.tasks.cancel_tasks(list(ids), to_ms(time.time()))
    if as_json:
        emit_json(
            {
                "cancelled": _record([c.task for c in done.cancelled]),
                "sending": _record(done.sending),
                "at_kling": _record(done.at_kling),
                "finished": _record(done.finished),
            }
        )
        return
    for line in _report(store, done):
        context.err.print(escape(line), highlight=False, soft_wrap=True)
