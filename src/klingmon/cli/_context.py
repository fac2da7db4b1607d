"""What every command shares: settings, consoles, the store, the client."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from klingmon.api import AsyncKlingClient
from klingmon.cli._logging import configure_logging
from klingmon.config import load_settings
from klingmon.downloads import DownloadSettings
from klingmon.engine import EngineSettings, Monitor
from klingmon.errors import InterruptedRunError
from klingmon.policy import SchedulePolicy
from klingmon.store import Store

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    import httpx
    import typer

    from klingmon.config import Settings

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
#: Credentials come from the environment only, never from a flag (``ps`` shows flags).
_CREDENTIALS = {
    "access_key": "KLING_ACCESS_KEY",
    "secret_key": "KLING_SECRET_KEY",
    "api_key": "KLING_API_KEY",
}


@dataclass
class Context:
    settings: Settings
    console: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))
    _store: Store | None = None

    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.settings.db)
        return self._store

    def client(
        self, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> AsyncKlingClient:
        return AsyncKlingClient.from_env(
            base_url=self.settings.api_base,
            transport=transport,
            **self.settings.credentials(),
        )

    def callback_url(self) -> Callable[[str], str] | None:
        """Builds each task's ``callback_url`` when a public URL is configured."""
        if not self.settings.public_url:
            return None
        from klingmon.web._tokens import (  # noqa: PLC0415 - no FastAPI for others
            callback_url_builder,
            server_secret,
        )

        secret = server_secret(self.store(), self.settings.callback_secret)
        return callback_url_builder(self.settings.public_url, secret)

    def engine_settings(self) -> EngineSettings:
        s = self.settings
        downloads = (
            DownloadSettings(out=s.download_dir, allow_origins=s.download_origins)
            if s.download
            else None
        )
        return EngineSettings(
            downloads=downloads,
            callback_url=self.callback_url(),
            slots=self.settings.slots,
            rate=self.settings.rate,
            schedule=SchedulePolicy(
                target_lag=self.settings.target_lag,
                min_interval=self.settings.min_interval,
                max_interval=self.settings.max_interval,
            ),
        )

    def monitor(self, client: AsyncKlingClient | None = None) -> Monitor:
        return Monitor(
            store=self.store(),
            client=client,
            settings=self.engine_settings(),
        )

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


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
            given.update({k: _env(v) for k, v in _CREDENTIALS.items()})
            config = self.values.get("config")
            settings = load_settings(
                given, config=Path(config) if config is not None else None
            )
            self._context = Context(settings=settings)
        return self._context

    def close(self) -> None:
        if self._context is not None:
            self._context.close()


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


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
