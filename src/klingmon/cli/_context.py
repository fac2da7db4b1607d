"""What every command shares: settings, consoles, the store, the client."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from klingmon.cli._logging import configure_logging
from klingmon.config import load_settings
from klingmon.errors import InterruptedRunError
from klingmon.runtime import Runtime, build_runtime

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    import httpx
    import typer

    from klingmon.api import AsyncKlingClient
    from klingmon.config import Settings
    from klingmon.engine import Monitor
    from klingmon.store import Store

__all__ = [
    "Context",
    "GlobalOptions",
    "emit_json",
    "get_context",
    "invocation",
    "run_async",
]

#: Global options that are not settings: they pick the file and the log output.
_NOT_SETTINGS = frozenset({"config", "verbose", "log_format"})


@dataclass
class Context:
    """One command's settings, consoles and runtime (built on first use, so that
    ``serve`` may still add its own options to the settings)."""

    settings: Settings
    console: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))
    _runtime: Runtime | None = None

    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = build_runtime(self.settings)
        return self._runtime

    def store(self) -> Store:
        return self.runtime().store

    def client(
        self, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> AsyncKlingClient:
        return self.runtime().client(transport=transport)

    def monitor(self, client: AsyncKlingClient | None = None) -> Monitor:
        return self.runtime().monitor(client)

    def engine_monitor(
        self, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> Monitor:
        """A monitor to run the engine with, one client per account."""
        return self.runtime().engine_monitor(transport=transport)

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()


@dataclass
class GlobalOptions:
    """The global options as given before the command, then after it.

    The root callback runs before the command's own options are parsed, so the
    settings are only built when a command first asks for its context, by which
    time every global option (wherever it stood on the line) has been seen.
    """

    values: dict[str, Any]
    _context: Context | None = None

    def given_later(self, name: str, value: Any) -> None:
        """A global option given after the command: it wins over the one before.

        Lists and counts add up instead: ``--download-origin`` before and after
        allows both origins, ``-v status -v`` is ``-vv``.
        """
        if name == "download_origins":
            value = [*(self.values.get(name) or ()), *value]
        elif name == "verbose":
            value = int(self.values.get(name) or 0) + int(value)
        self.values[name] = value
        if name in {"verbose", "log_format"}:
            self.configure_logging()

    def configure_logging(self) -> None:
        configure_logging(
            int(self.values.get("verbose") or 0),
            str(self.values.get("log_format") or "text"),
        )

    def context(self) -> Context:
        if self._context is None:
            given = {k: v for k, v in self.values.items() if k not in _NOT_SETTINGS}
            given["download_origins"] = (
                list(given.get("download_origins") or ()) or None
            )
            config = self.values.get("config")
            settings = load_settings(
                given, config=Path(config) if config is not None else None
            )
            self._context = Context(settings=settings)
        return self._context

    def close(self) -> None:
        if self._context is not None:
            self._context.close()


def get_context(ctx: typer.Context) -> Context:
    obj = ctx.find_root().obj
    if not isinstance(obj, GlobalOptions):  # pragma: no cover - set by the callback
        raise TypeError("klingmon context missing")
    return obj.context()


def invocation() -> str:
    """How to run this klingmon again from here, so that every hint we print is true."""
    argv0 = sys.argv[0]
    if Path(argv0).name == "klingmon":
        found = shutil.which("klingmon")
        if found and Path(found).resolve() == Path(argv0).resolve():
            return "klingmon"
        return shlex.quote(argv0)
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(Path.cwd()))
    except ValueError:
        shown = str(python)
    return f"{shlex.quote(shown)} -m klingmon"


def emit_json(value: Any) -> None:
    """Machine output: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_async(
    coro: Coroutine[Any, Any, Any],
    *,
    stop: Callable[[], object] | None = None,
    resume: str | None = None,
) -> Any:
    """Run ``coro``; SIGINT/SIGTERM call ``stop()`` for a clean finish.

    A second signal is not caught: it interrupts at once. With ``resume`` (the batch
    being run), a run that a signal stopped raises :class:`InterruptedRunError`
    after its clean finish, so the command exits 130 and says how to resume. This is
    the one place every long command gets that behaviour from.
    """
    received: list[int] = []

    async def main() -> Any:
        loop = asyncio.get_running_loop()

        def on_signal(sig: int) -> None:
            received.append(sig)
            for each in _STOP_SIGNALS:
                loop.remove_signal_handler(each)
            if stop is not None:
                stop()

        if stop is not None:
            for sig in _STOP_SIGNALS:
                loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await coro
        finally:
            if stop is not None and not received:
                for sig in _STOP_SIGNALS:
                    loop.remove_signal_handler(sig)

    result = asyncio.run(main())
    if received and resume is not None:
        raise InterruptedRunError(resume, program=invocation())
    return result
