"""Running the real ``klingmon`` command in a subprocess against a SimServer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from klingmon.testing import SimServer

#: Poll settings for a simulator running a hundred times faster than Kling.
FAST_FLAGS = (
    "--target-lag",
    "0.2",
    "--min-interval",
    "0.05",
    "--max-interval",
    "0.5",
    "--rate",
    "200",
)


def cli_env(server: SimServer, db: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KLING_", "KLINGMON_"))
    }
    env.update(
        KLING_API_BASE=server.url,
        KLING_ACCESS_KEY=server.sim.config.access_key,
        KLING_SECRET_KEY=server.sim.config.secret_key,
        KLINGMON_DB=str(db),
        KLINGMON_DOWNLOAD_DIR=str(db.parent / "downloads"),
        KLINGMON_DOWNLOAD_ORIGINS=server.url,
        **extra,
    )
    return env


def klingmon(
    *args: str, env: dict[str, str], timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "klingmon", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "klingmon", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_all(procs: Iterable[subprocess.Popen[Any]], within: float = 20) -> None:
    """SIGTERM every process still running, then wait; kill what outlives ``within``."""
    running = list(procs)
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_listening(port: int, proc: subprocess.Popen[str], within: float = 30) -> None:
    """Return once ``port`` takes connections; fail if ``proc`` exits first."""
    deadline = time.monotonic() + within
    while True:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(
                f"exited with {proc.returncode} before listening: {err}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listened on {port}") from None
            time.sleep(0.05)
