"""One contender on one workload, on a virtual-time loop, measured exactly.

The simulator, the Kling client, the store and the engine are the real ones; they
share one :class:`~bench.vtime.LoopClock` and talk through the simulator's in-process
transport, so hours of Kling time run in seconds of CPU and repeat exactly per seed.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from bench import baselines
from bench.vtime import LoopClock, run_virtual
from bench.workloads import (
    NEW,
    WEBHOOK_SECRET,
    Workload,
    not_run,
    sim_config,
    summary,
)
from klingmon import web
from klingmon.api import GenericRequest
from klingmon.config import Secret, Settings
from klingmon.domain import TERMINAL
from klingmon.engine import _offload as engine_offload
from klingmon.runtime import build_runtime
from klingmon.sim import Simulator
from klingmon.web import _app as web_app

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from klingmon.engine import Monitor

T = TypeVar("T")
RECEIVER_URL = "http://receiver.test"
_SECRET = b"klingmon-bench-callback-secret-0123456789"

__all__ = ["ENGINE_SETTINGS", "run_contender"]

#: What the benchmark sets on the engine, as a user would: the account's slots and a
#: seed for the jitter. Everything else is the shipped default.
ENGINE_SETTINGS: dict[str, Any] = {"seed": 1}

#: Virtual seconds after which a contender is declared not to finish.
VIRTUAL_HORIZON = 48 * 3600.0


async def _wall_guard(deadline: float, what: asyncio.Task[Any]) -> None:
    """Cancel ``what`` once the wall-clock budget is spent (checked every 30 s)."""
    while not what.done():
        if time.monotonic() > deadline:
            what.cancel()
            return
        await asyncio.sleep(30)


async def _guarded(coro: Any, wall_budget: float) -> tuple[bool, str | None]:
    """Run ``coro``; (finished, why not)."""
    task = asyncio.ensure_future(coro)
    guard = asyncio.ensure_future(_wall_guard(time.monotonic() + wall_budget, task))
    try:
        await asyncio.wait_for(asyncio.shield(task), VIRTUAL_HORIZON)
    except asyncio.CancelledError:
        return False, f"wall-clock budget of {wall_budget:.0f} s spent"
    except TimeoutError:
        task.cancel()
        return False, f"not done after {VIRTUAL_HORIZON / 3600:.0f} h of virtual time"
    except Exception as exc:
        return False, f"crashed: {type(exc).__name__}: {exc}"[:300]
    finally:
        guard.cancel()
    return True, None


async def _klingmon(
    workload: Workload, mode: str, wall_budget: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    callbacks = mode == "callback"
    receiver = _LateApp()
    sim = Simulator(
        sim_config(workload, callback_drop_rate=0.05 if callbacks else 0.0),
        clock=clock,
        callback_transport=httpx.ASGITransport(app=receiver) if callbacks else None,
    )
    with tempfile.TemporaryDirectory(prefix="klingmon-bench-") as tmp:
        settings = _settings(workload, sim, Path(tmp) / "bench.db", callbacks=callbacks)
        runtime = build_runtime(
            settings, clock=clock, transport=sim.transport(), engine=ENGINE_SETTINGS
        )
        store = runtime.store
        monitor = runtime.monitor(runtime.client())
        if callbacks:
            receiver.app = runtime.web_app(
                allowed_hosts=[web.url_host(RECEIVER_URL) or ""],
            )
        start = clock.now()
        requests = [
            GenericRequest(task_path=workload.endpoint, payload=body)
            for body in workload.bodies()
        ]
        batch_ids: list[int] = []
        wall = time.perf_counter()
        finished, why = await _guarded(
            _arrive_and_run(monitor, clock, workload, requests, batch_ids),
            wall_budget,
        )
        wall = time.perf_counter() - wall
        counters = sim.counters()
        detected: dict[str, int] = {}
        rows = [row for b in batch_ids for row in store.tasks.tasks(b)]
        kling_ids = {row.id: row.task_id for row in rows}
        batches = [
            {row.task_id for row in store.tasks.tasks(b) if row.task_id}
            for b in batch_ids
        ]
        shortfall = _shortfall(rows, len(counters["tasks"])) if finished else None
        if shortfall:
            finished, why = False, shortfall
        for b in batch_ids:
            for event in store.outbox.events(batch_id=b):
                if event.new_status in TERMINAL and event.new_status is not None:
                    kid = kling_ids.get(event.task_id)
                    if kid:
                        detected.setdefault(kid, event.at_ms)
        await monitor.aclose()
    out = summary(
        workload=workload,
        counters=counters,
        start=start,
        detected_ms=detected,
        done=finished,
        batches=batches,
    )
    out.update(wall_s=wall, virtual_s=clock.now() - start, why_not=why)
    if shortfall:
        out["not_run"] = True
    return out


async def _arrive_and_run(
    monitor: Monitor,
    clock: LoopClock,
    workload: Workload,
    requests: list[GenericRequest],
    batch_ids: list[int],
) -> None:
    """Submit the workload's batches as they arrive and run until all are done.

    One batch: ``run(batch=...)`` as a user would. Several: the engine runs
    throughout while each batch is stored at its arrival time (virtual seconds).
    """
    chunks = [[requests[i] for i in b] for b in workload.batches()]
    if len(chunks) == 1:
        batch = monitor.submit(chunks[0], batch="bench")
        batch_ids.append(batch.id)
        await monitor.run(batch=batch.id)
        return
    start = clock.now()

    async def arrive() -> None:
        for k, chunk in enumerate(chunks):
            await asyncio.sleep(
                max(0.0, start + k * workload.arrival_gap_s - clock.now())
            )
            batch_ids.append(monitor.submit(chunk, batch=f"bench-{k}").id)
        # Once a virtual second: the resolution the done lag is measured at.
        while not all(monitor.done(b) for b in batch_ids):  # noqa: ASYNC110
            await asyncio.sleep(1.0)
        monitor.stop()

    await asyncio.gather(arrive(), monitor.run(forever=True))


def _shortfall(rows: list[Any], created: int) -> str | None:
    """Why a run that "finished" did not run its tasks: fewer created in Kling than
    submitted (each ended in klingmon without reaching Kling), or None."""
    if created >= len(rows):
        return None
    first = next((r for r in rows if r.task_id is None), rows[0])
    detail = first.status_msg or first.last_error or "no message"
    return (
        f"not run: {len(rows) - created:,} of {len(rows):,} tasks never reached Kling"
        f" (first: {first.status}, {detail})"
    )[:300]


def _settings(
    workload: Workload, sim: Simulator, db: Path, *, callbacks: bool
) -> Settings:
    """klingmon's settings as a user would write them for this account.

    The new generation takes an API key only, and its callbacks carry Standard
    Webhooks signatures with the account's ``whsec_`` secret.
    """
    new = workload.generation == NEW
    api_key = sim.config.api_key if new else None
    return Settings(
        db=str(db),
        api_base="http://sim.test",
        access_key=sim.config.access_key,
        secret_key=Secret(sim.config.secret_key),
        api_key=Secret(api_key) if api_key else None,
        slots=workload.slots,
        download=False,
        public_url=RECEIVER_URL if callbacks else None,
        callback_secret=Secret(_SECRET.decode()),
        webhook_secret=Secret(WEBHOOK_SECRET) if new else None,
    )


class _LateApp:
    """An ASGI app bound after construction: the receiver needs the engine, which
    needs the client, which needs the simulator, which needs the receiver."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@contextmanager
def _inline_threadpool() -> Iterator[None]:
    """Run the receiver's thread-pool hop inline while on the virtual clock.

    A real worker thread would let the loop jump virtual time while it commits
    (nothing is scheduled on the loop meanwhile), inflating the measured lag; inline,
    the commit takes zero virtual time like every other piece of work here.
    """
    original = getattr(web_app, "run_in_threadpool")  # noqa: B009 - not exported
    engine_original = engine_offload.run_blocking

    async def inline(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return func(*args, **kwargs)

    setattr(web_app, "run_in_threadpool", inline)  # noqa: B010
    engine_offload.run_blocking = inline
    try:
        yield
    finally:
        setattr(web_app, "run_in_threadpool", original)  # noqa: B010
        engine_offload.run_blocking = engine_original


async def _seed(workload: Workload, which: str, wall_budget: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    sim = Simulator(sim_config(workload), clock=clock)
    transport = sim.transport()
    async with httpx.AsyncClient(transport=transport) as http:
        ctx = baselines.SeedContext(
            http=http,
            clock=clock,
            access_key=sim.config.access_key,
            secret_key=sim.config.secret_key,
        )
        start = clock.now()
        prompts = workload.prompts()
        wall = time.perf_counter()
        if which == "seed":
            run = baselines.seed_as_written(ctx, prompts)
        else:
            run = baselines.seed_fixed(
                ctx,
                prompts,
                workload.slots,
                bodies=workload.bodies() if workload.mix else None,
                ready_at=workload.ready_at() if workload.arrivals > 1 else None,
            )
        finished, why = await _guarded(run, wall_budget)
        wall = time.perf_counter() - wall
        counters = sim.counters()
    out = summary(
        workload=workload,
        counters=counters,
        start=start,
        detected_ms=ctx.seen_terminal_ms,
        done=finished,
    )
    out.update(wall_s=wall, virtual_s=clock.now() - start, why_not=why)
    return out


def run_contender(
    workload: Workload, contender: str, mode: str, *, wall_budget: float = 300.0
) -> dict[str, Any]:
    """``contender``: "klingmon", "seed" (a) or "seed-fixed" (b); a fresh loop each.

    A new-generation run that cannot start (an engine that cannot yet submit such
    tasks) comes back as a "not run" row with the reason; a legacy one still raises.
    """
    if contender == "klingmon":
        with _inline_threadpool():
            try:
                return run_virtual(_klingmon(workload, mode, wall_budget))
            except Exception as exc:
                if workload.generation != NEW:
                    raise
                return not_run(workload, f"{type(exc).__name__}: {exc}")
    if workload.generation == NEW:
        return not_run(workload, f"{contender} speaks only the legacy generation")
    return run_virtual(_seed(workload, contender, wall_budget))
