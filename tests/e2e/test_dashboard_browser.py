"""The dashboard in real headless Chromium, over ``klingmon serve`` and the simulator.

Needs Debian's ``chromium`` (/usr/bin/chromium) and the ``playwright`` package (its
own browsers are never downloaded). Without them the test skips, unless
``KLINGMON_REQUIRE_SERVICES=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from cli_support import FAST_FLAGS, cli_env, spawn

from klingmon._clock import to_ms
from klingmon.api import Text2VideoRequest
from klingmon.engine import Monitor
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer, free_port

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Iterator

    from playwright.sync_api import Browser, Page

# Read now: the autouse fixture clears KLINGMON_* before each test runs.
REQUIRED = os.environ.get("KLINGMON_REQUIRE_SERVICES") == "1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The README's screenshots are rewritten only when asked (KLINGMON_SCREENSHOTS=1), so
#: a test run leaves the checkout as it found it.
DOCS = Path(__file__).parents[2] / "docs"
_SHOTS = bool(os.environ.get("KLINGMON_SCREENSHOTS"))
TASKS = 12

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]


def _missing() -> str | None:
    if sync_playwright is None:
        return "the playwright package is not installed (pip install playwright)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    missing = _missing()
    if missing is not None:
        if REQUIRED:
            pytest.fail(f"KLINGMON_REQUIRE_SERVICES=1 but {missing}")
        pytest.skip(missing)
    assert sync_playwright is not None
    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield found
        finally:
            found.close()


def _wait(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Serve:
    """``klingmon serve`` in a subprocess on a fixed port, so it can come back."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = spawn(*FAST_FLAGS, "serve", "--port", str(self.port), env=self.env)
        _wait(
            lambda: httpx.get(f"{self.base}/readyz").status_code == 200,
            timeout=20,
            what="readyz",
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err
        self.proc = None


def _flag_latency(page: Page, db: Path, task_id: int, kind: str, mark: str) -> float:
    """Seconds from a flag committed to the store to its mark shown in the page."""
    with Store.open(str(db)) as store:
        started = time.monotonic()
        store.watch.flag(task_id, kind, to_ms(time.time()), {"by": "test"})  # type: ignore[arg-type]
    page.wait_for_selector(f"#t-{task_id} .{mark}", timeout=5000)
    return time.monotonic() - started


def _no_overflow(page: Page) -> bool:
    width: int = page.evaluate("document.documentElement.scrollWidth")
    return width <= page.viewport_size["width"]  # type: ignore[index]


SCENES = (
    "A lighthouse at dusk, waves breaking on the rocks",
    "A red fox crossing a snowy field at dawn",
    "Neon street in the rain, <b>reflections</b> on the asphalt",
    "Paper boats drifting down a canal in Amsterdam",
    "Slow pan across a desert under the milky way",
    "A hummingbird hovering over a red hibiscus",
)


def _submit(db: Path, name: str, n: int) -> None:
    with Store.open(str(db)) as store:
        requests = [
            Text2VideoRequest(
                prompt=SCENES[i % len(SCENES)], model_name="kling-v2-6", mode="std"
            )
            for i in range(n)
        ]
        Monitor(store=store).submit(requests, batch=name)


def _statuses(page: Page) -> dict[str, str]:
    found: dict[str, str] = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#task-table tbody tr')]"
        ".map(r => [r.id, r.dataset.status]))"
    )
    return found


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_dashboard_in_chromium(browser: Browser, tmp_path: Path) -> None:
    """Live overview and batch page, task timeline, playable preview, refused action."""
    db = tmp_path / "dash.db"
    config = SimConfig(
        admin=True, seed=11, time_scale=40.0, faults=Faults(fail_rate=0.3)
    )
    with SimServer(config) as sim:
        _submit(db, "lighthouse", TASKS)
        serve = Serve(cli_env(sim, db), free_port())
        serve.start()
        try:
            _run(browser, serve, db, shots=DOCS if _SHOTS else tmp_path)
        finally:
            serve.stop()


def _run(browser: Browser, serve: Serve, db: Path, *, shots: Path) -> None:
    base = serve.base
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # The overview lists the batch and goes live.
    page.goto(f"{base}/")
    page.wait_for_selector("#live-state.on")
    assert page.locator("#b-1 h2").inner_text() == "lighthouse"
    assert page.locator("#account").is_visible()

    # The batch page: a task changes status without a reload.
    page.goto(f"{base}/batches/lighthouse")
    page.wait_for_selector("#live-state.on")
    page.evaluate("window.__sameDocument = true")
    before = _statuses(page)
    assert len(before) == TASKS
    page.wait_for_function(
        "before => [...document.querySelectorAll('#task-table tbody tr')]"
        ".some(r => r.dataset.status !== before[r.id])",
        arg=before,
        timeout=20_000,
    )
    assert page.evaluate("window.__sameDocument") is True

    # Latency: from a store write (here, a flag) to the page showing it.
    ids = [int(k.removeprefix("t-")) for k in before]
    latencies = [
        _flag_latency(page, db, ids[0], "stuck", "mark-stuck"),
        _flag_latency(page, db, ids[1], "watch_timeout", "mark-timeout"),
        _flag_latency(page, db, ids[2], "stuck", "mark-stuck"),
    ]
    print(f"update latency: {[round(x, 3) for x in latencies]} s")  # noqa: T201
    assert statistics.median(latencies) < 1.0, latencies

    # Sorting by keyboard: focus a column's button and press Enter.
    page.focus("button[data-sort='1']")
    page.keyboard.press("Enter")
    assert page.get_attribute("#task-table th:nth-child(2)", "aria-sort") == "ascending"

    # Wait for the batch to finish and its videos to be downloaded.
    page.wait_for_function(
        "() => document.querySelectorAll('#task-table tbody tr').length > 0 && "
        "[...document.querySelectorAll('#task-table tbody tr')].every("
        "r => ['succeed', 'failed'].includes(r.dataset.status))",
        timeout=60_000,
    )
    page.wait_for_selector("#previews figure video", timeout=20_000)
    assert page.evaluate("window.__sameDocument") is True
    DOCS.mkdir(exist_ok=True)

    # A read-only dashboard refuses actions: disabled buttons, 403 on a POST.
    assert page.locator("#actions button").first.is_disabled()
    refused = page.request.post(f"{base}/actions/retry/lighthouse")
    assert refused.status == 403
    assert "--token" in refused.text()

    # A task's timeline, and its downloaded preview playing in the page.
    link = page.locator("#task-table tbody tr[data-status='succeed'] td a").first
    link.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#timeline")
    kinds = page.locator("#timeline li strong").all_inner_texts()
    assert "status" in kinds, kinds
    sources = set(page.locator("#timeline .src").all_inner_texts())
    assert "submit" in sources, sources
    assert "kling-v2-6" in page.locator("#request pre").inner_text()
    video = page.locator("#files video").first
    video.evaluate("v => v.play()")
    page.wait_for_function(
        "() => { const v = document.querySelector('#files video');"
        " return v.readyState >= 2 && v.currentTime > 0; }",
        timeout=10_000,
    )

    # The overview, with a second batch under way, for the README.
    page.goto(f"{base}/")
    page.wait_for_selector("#live-state.on")
    _submit(db, "harbour", 3 * TASKS)
    page.wait_for_selector("#b-2 rect.s-succeed", timeout=20_000)
    page.screenshot(path=str(shots / "dashboard-overview.png"))
    page.goto(f"{base}/batches/harbour")
    page.wait_for_selector("#live-state.on")
    page.screenshot(path=str(shots / "dashboard-batch.png"))

    # Readable at phone width: nothing wider than the screen but the table's box.
    phone = browser.new_context(viewport={"width": 375, "height": 740})
    small = phone.new_page()
    for path in ("/", "/batches/lighthouse", f"/tasks/{ids[0]}"):
        small.goto(base + path)
        assert _no_overflow(small), path
    phone.close()

    # The server restarts; the open page reconnects and stays live.
    page.goto(f"{base}/batches/lighthouse")
    page.wait_for_selector("#live-state.on")
    page.evaluate("window.__sameDocument = true")
    serve.stop()
    page.wait_for_selector("#live-state.off", timeout=5000)
    serve.start()
    page.wait_for_selector("#live-state.on", timeout=10_000)
    after = _flag_latency(page, db, ids[3], "watch_timeout", "mark-timeout")
    print(f"after restart: {after:.3f} s")  # noqa: T201
    assert page.evaluate("window.__sameDocument") is True
    assert not errors, errors
    context.close()
