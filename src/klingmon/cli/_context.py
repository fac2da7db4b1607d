"""What every command shares: settings, consoles, the store, the client."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console

from klingmon.api import AsyncKlingClient
from klingmon.engine import DownloadSettings, EngineSettings, Monitor
from klingmon.policy import SchedulePolicy
from klingmon.store import Store

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    import httpx
    import typer

    from klingmon.config import Settings

__all__ = ["Context", "emit_json", "get_context", "run_async"]


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


def get_context(ctx: typer.Context) -> Context:
    obj = ctx.find_root().obj
    if not isinstance(obj, Context):  # pragma: no cover - set by the callback
        raise TypeError("klingmon context missing")
    return obj


def emit_json(value: Any) -> None:
    """Machine output: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


def run_async(coro: Coroutine[Any, Any, Any], *, stop: Any = None) -> Any:
    """Run ``coro``; SIGINT/SIGTERM call ``stop()`` for a clean finish."""

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        if stop is not None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop)
        try:
            return await coro
        finally:
            if stop is not None:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    return asyncio.run(main())
