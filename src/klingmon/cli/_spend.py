"""``quote``, ``approve`` and ``resume``: what a batch costs, and letting it go on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from klingmon._clock import to_ms
from klingmon.batchfile import read_batch_file
from klingmon.cli._account import expiry_lines, packs_table
from klingmon.cli._app import app
from klingmon.cli._context import Context, emit_json, get_context, run_async
from klingmon.domain import BatchState
from klingmon.engine import Account
from klingmon.errors import KlingmonError
from klingmon.policy import DEFAULT_ACCOUNT, with_remaining

if TYPE_CHECKING:
    from collections.abc import Sequence

    from klingmon.api import TaskRequest
    from klingmon.policy import AccountFigures, Quote

__all__ = [
    "ask_account",
    "quote_of",
    "remaining_units",
    "say_expiring",
    "say_packs",
    "say_quote",
    "state_label",
]

logger = logging.getLogger(__name__)


def ask_account(context: Context) -> tuple[AccountFigures | None, str | None]:
    """The packs as Kling says them now (kept for ``status``), or None and why not."""
    try:
        client = context.client()
    except KlingmonError as exc:
        return None, exc.message
    monitor = context.monitor(client)

    async def ask() -> None:
        try:
            await monitor.account_costs()
        finally:
            await client.aclose()

    try:
        run_async(ask())
    except KlingmonError as exc:
        logger.info("quote.no_costs", extra={"error": type(exc).__name__})
        return None, exc.message
    return monitor.account.latest(), None


def _ask_named(context: Context, name: str) -> tuple[float | None, str | None]:
    """Units left in named account ``name``'s online packs, or None and why not.

    Asked on a client of its own and not kept: ``status`` and the dashboard show
    the default account's packs.
    """
    runtime = context.runtime()
    try:
        client = runtime.account_client(name)
    except KlingmonError as exc:
        return None, exc.message
    account = Account(clock=runtime.clock)

    async def ask() -> AccountFigures:
        try:
            return await account.refresh(client)
        finally:
            await client.aclose()

    try:
        figures = run_async(ask())
    except KlingmonError as exc:
        logger.info("quote.no_costs", extra={"error": type(exc).__name__})
        return None, f"account {name}: {exc.message}"
    return figures.remaining, None


def remaining_units(
    context: Context, accounts: Sequence[str] = (DEFAULT_ACCOUNT,)
) -> tuple[float | None, str | None]:
    """Units left in the online packs of ``accounts`` together, or None and why
    not (one account that cannot say leaves the sum unknown)."""
    total = 0.0
    for name in accounts:
        if name == DEFAULT_ACCOUNT:
            figures, why = ask_account(context)
            remaining = None if figures is None else figures.remaining
        else:
            remaining, why = _ask_named(context, name)
        if remaining is None:
            return None, why
        total += remaining
    return total, None


def say_packs(context: Context, figures: AccountFigures) -> None:
    """The packs' table on stdout, a warning per pack about to expire on stderr."""
    now_ms = to_ms(context.runtime().clock.now())
    context.console.print(packs_table(figures, now_ms))
    say_expiring(context, figures)


def say_expiring(context: Context, figures: AccountFigures | None = None) -> None:
    """A warning per pack that expires soon with units left (last seen figures)."""
    found = figures if figures is not None else context.runtime().account.latest()
    if found is None:
        return
    for line in expiry_lines(found, to_ms(context.runtime().clock.now())):
        context.err.print(line, markup=False, highlight=False, soft_wrap=True)


def quote_of(
    context: Context, requests: list[TaskRequest], *, accounts: Sequence[str]
) -> tuple[Quote, str | None]:
    """The requests' quote; with ``accounts``, their packs' remaining units in it."""
    quote = context.monitor().quote(requests)
    if not accounts:
        return quote, None
    remaining, why = remaining_units(context, accounts)
    return with_remaining(quote, remaining), why


def _units(value: float | None) -> str:
    return "?" if value is None else f"{value:,.2f}".rstrip("0").rstrip(".")


def _time(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def say_quote(context: Context, quote: Quote, *, why: str | None = None) -> None:
    """The quote as a table and a few lines, on stderr."""
    table = Table(box=None, pad_edge=False)
    for name in ("endpoint", "model", "mode", "duration", "audio", "tasks"):
        table.add_column(name, justify="right" if name == "tasks" else "left")
    table.add_column("units each", justify="right")
    table.add_column("units", justify="right")
    table.add_column("price")
    for line in quote.lines:
        endpoint, model, mode, duration, audio = line.key
        table.add_row(
            escape(endpoint),
            escape(model),
            escape(mode),
            escape(duration),
            "yes" if audio else "",
            str(line.tasks),
            _units(line.units_each),
            _units(line.units),
            str(line.source),
        )
    err = context.err
    err.print(table)
    total = f"Total: {quote.tasks} tasks, {_units(quote.units)} units"
    if quote.cash is not None:
        total += f", {quote.cash:.2f} {quote.currency or ''}".rstrip()
    if quote.unknown_tasks:
        total += f" (+ {quote.unknown_tasks} tasks of unknown price)"
    err.print(total, markup=False, soft_wrap=True)
    err.print(
        f"Expected time: about {_time(quote.seconds)} at {quote.slots} slots",
        markup=False,
    )
    if quote.remaining is not None:
        verdict = "cover it" if quote.covered else "do NOT cover it"
        err.print(
            f"Remaining units in the packs: {_units(quote.remaining)}: {verdict}",
            markup=False,
            soft_wrap=True,
        )
    elif why is not None:
        err.print(f"Remaining units: unknown ({why})", markup=False, soft_wrap=True)


@app.command()
def quote(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help=".txt, .csv or .jsonl, as for submit."),
    endpoint: str = typer.Option(
        "text2video", "--endpoint", help="Endpoint for rows that name none."
    ),
    account: bool = typer.Option(
        True,
        "--account/--no-account",
        help="Ask GET /account/costs whether the packs cover it (when the "
        "credentials allow).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """What a batch file would cost (units, cash where known) and take; sends nothing.

    Each line's price is learned (from finished tasks), shipped (the table, or
    [prices] in klingmon.toml) or unknown.
    """
    context = get_context(ctx)
    rows = read_batch_file(file, endpoint=endpoint)
    found, why = quote_of(
        context,
        [r.request for r in rows],
        accounts=[DEFAULT_ACCOUNT] if account else [],
    )
    if as_json:
        emit_json(found.to_json() | ({"remaining_error": why} if why else {}))
        return
    say_quote(context, found, why=why)
    if account:
        say_expiring(context)


@app.command()
def approve(
    ctx: typer.Context,
    batch: str = typer.Argument(..., help="The batch awaiting approval."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Let a batch stored awaiting approval be sent (by the next run or watch)."""
    context = get_context(ctx)
    row = context.monitor().approve(batch)
    if as_json:
        emit_json({"batch": row.name, "id": row.id, "state": row.state})
        return
    context.err.print(
        f"Approved batch {escape(row.name)}: `klingmon watch {escape(row.name)}` "
        "sends it.",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def resume(
    ctx: typer.Context,
    batch: str = typer.Argument(..., help="The batch paused by its budget."),
    max_units: float | None = typer.Option(
        None, "--max-units", min=0, help="The batch's new cap in units."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Let a batch paused by its budget go on, with a higher cap if given."""
    context = get_context(ctx)
    monitor = context.monitor()
    row = monitor.resume(batch, max_units=max_units)
    spent = monitor.store.spend.summary(row.id)
    if as_json:
        emit_json(
            {
                "batch": row.name,
                "id": row.id,
                "state": row.state,
                "max_units": row.max_units,
                "counted_units": round(spent.counted, 4),
            }
        )
        return
    cap = "no cap" if row.max_units is None else f"cap {_units(row.max_units)} units"
    context.err.print(
        f"Resumed batch {escape(row.name)}: {_units(spent.counted)} units counted, "
        f"{cap}.",
        highlight=False,
        soft_wrap=True,
    )


def state_label(state: str | None) -> str:
    """``awaiting approval``, ``paused: budget``, or "" for a batch that runs."""
    return BatchState(state).label if state else ""
