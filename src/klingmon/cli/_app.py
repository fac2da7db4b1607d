"""The ``klingmon`` command: global options, error handling and exit codes.

Exit codes: 0 success; 1 unexpected error; 2 usage, configuration or input error;
3 Kling refused the credentials; 4 Kling or the network failed; 5 tasks ended failed
or rejected; 6 a deadline passed (tasks are still tracked); 7 the store cannot be used;
130 interrupted.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

import typer

from klingmon.cli._context import Context
from klingmon.cli._logging import configure_logging
from klingmon.config import load_settings
from klingmon.errors import KlingmonError

__all__ = ["app", "main"]

app = typer.Typer(
    name="klingmon",
    help="Submit, watch and collect Kling AI generation jobs; nothing paid is lost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@app.callback()
def root(
    ctx: typer.Context,
    db: str | None = typer.Option(
        None, "--db", envvar="KLINGMON_DB", help="Store: SQLAlchemy URL or SQLite path."
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
) -> None:
    configure_logging(verbose, log_format)
    given = {
        "db": db,
        "api_base": api_base,
        "slots": slots,
        "rate": rate,
        "target_lag": target_lag,
        "min_interval": min_interval,
        "max_interval": max_interval,
        "download": download,
        "download_dir": download_dir,
        "download_origins": download_origins or None,
        "access_key": _env("KLING_ACCESS_KEY"),
        "secret_key": _env("KLING_SECRET_KEY"),
        "api_key": _env("KLING_API_KEY"),
    }
    settings = load_settings(given, config=config)
    context = Context(settings=settings)
    ctx.obj = context
    ctx.call_on_close(context.close)


def _env(name: str) -> str | None:
    import os  # noqa: PLC0415 - read at call time so tests can set it

    return os.environ.get(name) or None


def main() -> None:
    """Entry point: the one place that turns a klingmon error into its exit code."""
    try:
        app(prog_name="klingmon")
    except KlingmonError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
