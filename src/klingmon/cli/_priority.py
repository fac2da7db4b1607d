"""``priority``: change which batch the next freed slots go to, while it runs."""

from __future__ import annotations

import time

import typer
from rich.markup import escape

from klingmon._clock import to_ms
from klingmon.cli._app import app
from klingmon.cli._context import emit_json, get_context
from klingmon.errors import NotFoundError
from klingmon.policy import AGING_RULE, PRIORITY_LIMIT

__all__ = ["PriorityOption"]

#: ``submit --priority``: one help text for both commands.
PriorityOption = typer.Option(
    0,
    "--priority",
    min=-PRIORITY_LIMIT,
    max=PRIORITY_LIMIT,
    help=f"Higher is sent first (default 0; negative is fine). {AGING_RULE}",
)


@app.command(
    context_settings={"ignore_unknown_options": True},  # a negative N is no option
    help="Change a batch's priority while it runs: higher is sent first.\n\n"
    f"{AGING_RULE} Each task still queued gets a 'priority' event; tasks "
    "already sent are not affected. Running workers and watches take the new "
    "order at their next claim; a watch of another batch leaves a higher batch "
    "that a live run sends the slots it earns.",
)
def priority(
    ctx: typer.Context,
    batch: str = typer.Argument(..., help="Batch name or id.", show_default=False),
    value: int = typer.Argument(
        ...,
        metavar="N",
        min=-PRIORITY_LIMIT,
        max=PRIORITY_LIMIT,
        help="The new priority (an integer).",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    context = get_context(ctx)
    store = context.store()
    row = store.tasks.batch(batch)
    if row is None:
        raise NotFoundError(f"no batch {batch!r}; `klingmon status` lists the batches")
    old, moved = store.tasks.set_priority(row.id, value, to_ms(time.time()), by="cli")
    if as_json:
        emit_json({"batch": row.name, "id": row.id, "old": old, "new": value})
        return
    context.err.print(
        f"Batch {escape(row.name)}: priority {old} → {value}; "
        f"{moved} queued {'task' if moved == 1 else 'tasks'} go by it from the "
        "next claim.",
        highlight=False,
        soft_wrap=True,
    )
