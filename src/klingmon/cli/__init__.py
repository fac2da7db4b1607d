"""The ``klingmon`` command line (Typer + Rich)."""

from klingmon.cli import (
    _cancel,
    _db,
    _download,
    _priority,
    _read,
    _serve,
    _sim,
    _spend,
    _submit,
    _watch,
)
from klingmon.cli._app import app, main

__all__ = ["app", "main"]

del _cancel, _db, _download, _priority, _read, _serve, _sim, _spend, _submit, _watch
