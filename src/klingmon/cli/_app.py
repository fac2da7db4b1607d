"""The ``klingmon`` command: global options, error handling and exit codes.

Exit codes live in one place, :class:`klingmon.errors.ExitCode`; ``klingmon --help``
prints them from there and a test holds docs/errors.md to them. Global options are
accepted before or after the command (see :class:`KlingmonGroup`).
"""

from __future__ import annotations

import copy
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup, TyperOption

from klingmon.cli._context import GlobalOptions, invocation
from klingmon.errors import ExitCode, InterruptedRunError, KlingmonError

if TYPE_CHECKING:
    # Typer 0.29 vendors click as typer._click; older Typer uses click itself. Only
    # the types come from there: at run time this module relies on Typer's classes.
    from typer._click import Command, Context, HelpFormatter, Parameter

__all__ = ["KlingmonGroup", "app", "main"]


#: Root options that make no sense after a command.
_NOT_SHARED = frozenset({"version"})
#: A short-help length no first sentence reaches: summaries wrap instead.
_NO_LIMIT = 10_000


def _exit_codes_epilog() -> str:
    # \b keeps click from re-wrapping the table.
    rows = [f"  {code.value:<4} {code.description}" for code in ExitCode]
    return "\b\nExit codes:\n" + "\n".join(rows)


class KlingmonGroup(TyperGroup):
    """The root group: its options also work after any command, as in gh or uv.

    Click parses a group's options before the command name only. Rather than
    reorder argv, each command (and each nested group) gets a hidden copy of every
    global option; the copy exposes no value to the command and records what was
    given in the shared :class:`GlobalOptions`, which builds the settings when a
    command first asks. A command's own option of the same name wins.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shared = [
            p
            for p in self.params
            if isinstance(p, TyperOption) and p.name not in _NOT_SHARED
        ]
        for command in self.commands.values():
            _share(command, shared)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """Each command's first sentence, wrapped rather than cut off with "..."."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=_NO_LIMIT)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise InterruptedRunError(program=invocation()) from None


def _share(command: Command, options: list[TyperOption]) -> None:
    """Give ``command`` (and its subcommands) the global options it lacks."""
    taken = {p.name for p in command.params}
    taken |= {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    for option in options:
        if taken.isdisjoint({option.name, *option.opts, *option.secondary_opts}):
            command.params.append(_later(option))
    if command.epilog is None:
        command.epilog = "Global options (klingmon --help) work here too."
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            _share(sub, options)


def _later(option: TyperOption) -> TyperOption:
    """A hidden copy of a global option that only records a value given on the line."""
    later = copy.copy(option)
    later.envvar = None
    later.default = None
    later.hidden = True
    later.expose_value = False
    later.is_eager = False
    later.callback = _given_later
    return later


def _given_later(ctx: Context, param: Parameter, value: Any) -> None:
    source = ctx.get_parameter_source(param.name) if param.name else None
    if source is None or source.name != "COMMANDLINE":
        return
    options = ctx.find_root().obj
    if isinstance(options, GlobalOptions):
        options.given_later(param.name, value)


app = typer.Typer(
    name="klingmon",
    cls=KlingmonGroup,
    help="Submit, watch and collect Kling AI generation jobs; nothing paid is lost.",
    epilog=_exit_codes_epilog(),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def _show_version(value: bool) -> None:
    if value:
        from klingmon import __version__  # noqa: PLC0415 - the package imports us

        typer.echo(f"klingmon {__version__}")
        raise typer.Exit


@app.callback()
def root(
    ctx: typer.Context,
    db: str | None = typer.Option(
        None,
        "--db",
        envvar="KLINGMON_DB",
        help="Store: SQLAlchemy URL or SQLite path (default: the user data folder).",
    ),
    api_base: str | None = typer.Option(
        None, "--api-base", envvar="KLING_API_BASE", help="Kling base URL."
    ),
    slots: int | None = typer.Option(
        None, "--slots", envvar="KLINGMON_SLOTS", help="The account's parallel tasks."
    ),
    rate: float | None = typer.Option(
        None, "--rate", envvar="KLINGMON_RATE", help="Requests per second to start at."
    ),
    target_lag: float | None = typer.Option(
        None,
        "--target-lag",
        envvar="KLINGMON_TARGET_LAG",
        help="Seconds between a finish and its detection, at most, while likely.",
    ),
    request_cost: float | None = typer.Option(
        None,
        "--request-cost",
        envvar="KLINGMON_REQUEST_COST",
        help="Slot-seconds a query is worth while work waits: lower polls tighter.",
    ),
    done_lag: float | None = typer.Option(
        None,
        "--done-lag",
        envvar="KLINGMON_DONE_LAG",
        help="Seconds from a batch's last finish to its done, at most.",
    ),
    min_interval: float | None = typer.Option(
        None,
        "--min-interval",
        envvar="KLINGMON_MIN_INTERVAL",
        help="Fewest seconds between two polls of a task.",
    ),
    max_interval: float | None = typer.Option(
        None,
        "--max-interval",
        envvar="KLINGMON_MAX_INTERVAL",
        help="Most seconds between two polls of a running task.",
    ),
    download: bool | None = typer.Option(
        None,
        "--download/--no-download",
        envvar="KLINGMON_DOWNLOAD",
        help="Fetch results as tasks succeed.",
        show_default=False,
    ),
    download_dir: str | None = typer.Option(
        None,
        "--download-dir",
        envvar="KLINGMON_DOWNLOAD_DIR",
        help="Where results land (default ./klingmon-downloads).",
    ),
    download_origins: list[str] | None = typer.Option(
        None,
        "--download-origin",
        envvar="KLINGMON_DOWNLOAD_ORIGINS",
        help="An origin results may come from besides Kling's CDN (repeatable).",
    ),
    config: Path | None = typer.Option(
        None, "--config", envvar="KLINGMON_CONFIG", help="A klingmon.toml file."
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."
    ),
    log_format: LogFormat = typer.Option(
        LogFormat.TEXT,
        "--log-format",
        envvar="KLINGMON_LOG_FORMAT",
        help="Log lines as text or JSON.",
    ),
    version: bool = typer.Option(  # noqa: ARG001 - handled by its callback
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        expose_value=True,
        help="Print klingmon's version and exit.",
    ),
) -> None:
    options = GlobalOptions(
        {
            "db": db,
            "api_base": api_base,
            "slots": slots,
            "rate": rate,
            "target_lag": target_lag,
            "request_cost": request_cost,
            "done_lag": done_lag,
            "min_interval": min_interval,
            "max_interval": max_interval,
            "download": download,
            "download_dir": download_dir,
            "download_origins": download_origins or None,
            "config": config,
            "verbose": verbose,
            "log_format": log_format.value,
        }
    )
    options.configure_logging()
    ctx.obj = options
    ctx.call_on_close(options.close)


def main() -> None:
    """Entry point: the one place that turns a klingmon error into its exit code."""
    try:
        app(prog_name="klingmon")
    except KlingmonError as exc:
        quiet = exc.exit_code in {ExitCode.OK, ExitCode.INTERRUPTED}
        typer.echo(exc.message if quiet else f"Error: {exc.message}", err=True)
        sys.exit(int(exc.exit_code))
