"""``klingmon db``: the store's schema, for fleets that upgrade deliberately."""

from __future__ import annotations

import typer

from klingmon.cli._app import app
from klingmon.cli._context import emit_json, get_context

__all__: list[str] = []

db_app = typer.Typer(help="The store's schema (every command also upgrades on open).")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Bring the database to this klingmon's schema (refuses a newer database)."""
    context = get_context(ctx)
    current, head = context.store().meta.revisions()
    if as_json:
        emit_json({"revision": current, "head": head, "db": context.store().url})
    else:
        context.err.print(f"Store {context.store().url} is at schema {current}.")
