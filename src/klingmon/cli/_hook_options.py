"""Outgoing-hook options shared by ``serve`` and ``worker``: hooks run in the engine."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["ForwardSecret", "ForwardUrl", "HookCommand", "HookEnv", "Notify"]

HookCommand = Annotated[
    str | None,
    typer.Option(
        "--hook-command",
        help=(
            "Shell command run per event (JSON on stdin), in a clean environment:"
            " PATH, HOME, TMPDIR, the locale and KLINGMON_EVENT_*, no credentials."
            " Its stderr is kept out of errors and logs."
        ),
    ),
]
HookEnv = Annotated[
    list[str] | None,
    typer.Option(
        "--hook-env",
        envvar="KLINGMON_HOOK_ENV",
        help="A variable the hook command may see too, by name (repeat).",
        show_default=False,
    ),
]
ForwardUrl = Annotated[
    str | None,
    typer.Option("--forward-url", help="POST each event here (Standard Webhooks)."),
]
ForwardSecret = Annotated[
    str | None,
    typer.Option(
        "--forward-secret",
        envvar="KLINGMON_FORWARD_SECRET",
        help=(
            "whsec_ secret to sign forwarded events with. Prefer the environment"
            " variable: a flag shows in ps."
        ),
        show_default=False,
    ),
]
Notify = Annotated[
    list[str] | None,
    typer.Option(
        "--notify",
        envvar="KLINGMON_NOTIFY",
        help=(
            "Apprise URL for failed, stuck and batch-done (repeat). URLs with a"
            " password belong in the environment variable (space-separated):"
            " a flag shows in ps."
        ),
        show_default=False,
    ),
]
