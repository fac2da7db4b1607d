"""What the money tests check from the user's side: files on disk, creates billed."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from klingmon.testing import SimServer


def wait_for(what: str, ok: Callable[[], bool], within: float = 30.0) -> None:
    """Return once ``ok()`` holds; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def admin(server: SimServer, route: str, body: dict[str, Any]) -> None:
    """POST to the simulator's admin API, as ``klingmon sim --admin`` users do."""
    answer = httpx.post(f"{server.url}/admin/{route}", json=body, timeout=10)
    assert answer.status_code == 200, answer.text


def files_on_disk(root: Path) -> Counter[str]:
    """SHA-256 of every result video under ``root`` (sidecars and parts left out)."""
    return Counter(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*.mp4")
        if p.is_file()
    )


def results_at_kling(server: SimServer) -> Counter[str]:
    """SHA-256 of every result file the simulator holds for a succeeded task."""
    tasks = server.sim.counters()["tasks"].values()
    return Counter(
        server.sim.media_sha256(url)
        for t in tasks
        if t["status"] == "succeed"
        for url in t["urls"]
    )


def billed_per_external_id(server: SimServer) -> Counter[str]:
    """Tasks the simulator created (and Kling would bill) per ``external_task_id``."""
    return Counter(
        t["external_task_id"] for t in server.sim.counters()["tasks"].values()
    )
