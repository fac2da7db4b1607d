"""The seed's approach, as its text writes it, on the virtual clock.

Transcribed from ``seed/000_7d0d7366a443fbe7.txt`` (Batch Job Tracker, Stuck Task
Detection, Batch Monitor Loop) with only these mechanical changes, so that it runs in
the same process and timeline as the simulator:

- ``requests.get/post`` -> ``await http.get/post`` on an ``httpx.AsyncClient`` over
  the simulator's in-process transport; ``timeout=30`` kept;
- ``time.sleep`` -> ``await asyncio.sleep`` and ``time.time`` -> ``clock.now`` (the
  virtual clock); ``print`` -> ``out`` (discarded in benchmarks);
- ``BASE`` points at the simulator; ``get_headers`` mints a JWT per call as written;
- one line of measurement: the instant ``update_all`` first sees a task terminal.

Intervals (15 s loop), order of calls (sequential GET per active task, then report,
then stuck check) and the lack of handling (no 1303/1302 handling, ``r["data"]``
read blindly, exceptions only printed inside ``update_all``) are the seed's.

(b) ``seed_fixed`` is the smallest change that lets the seed finish a batch larger
than the account's slots: submit only while fewer than ``slots`` tasks are active,
and after each 15 s round submit again into the freed slots.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from klingmon._clock import Clock

__all__ = ["BASE", "BatchTracker", "SeedContext", "seed_as_written", "seed_fixed"]

BASE = "http://sim.test/v1"
#: The seed's model, prompt and duration; the body is built exactly as written.
_MODEL = "kling-v2-master"


@dataclass
class SeedContext:
    http: httpx.AsyncClient
    clock: Clock
    access_key: str
    secret_key: str
    out: Callable[..., None] = field(default=lambda *_a, **_k: None)
    #: Measurement only: task_id -> epoch ms when the seed first saw it terminal.
    seen_terminal_ms: dict[str, int] = field(default_factory=dict)


def get_headers(ctx: SeedContext) -> dict[str, str]:
    ak, sk = ctx.access_key, ctx.secret_key
    token = jwt.encode(
        {
            "iss": ak,
            "exp": int(ctx.clock.now()) + 1800,
            "nbf": int(ctx.clock.now()) - 5,
        },
        sk,
        algorithm="HS256",
        headers={"alg": "HS256", "typ": "JWT"},
    )
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


@dataclass
class TrackedTask:
    task_id: str
    endpoint: str
    prompt: str
    created_at: float
    status: str = "submitted"
    result_url: str | None = None
    error_msg: str | None = None


class BatchTracker:
    def __init__(self, ctx: SeedContext) -> None:
        self.ctx = ctx
        self.tasks: dict[str, TrackedTask] = {}

    def add(self, task_id: str, endpoint: str, prompt: str) -> None:
        self.tasks[task_id] = TrackedTask(
            task_id=task_id,
            endpoint=endpoint,
            prompt=prompt,
            created_at=self.ctx.clock.now(),
        )

    async def update_all(self) -> None:
        active = [
            t for t in self.tasks.values() if t.status in ("submitted", "processing")
        ]
        for task in active:
            try:
                r = (
                    await self.ctx.http.get(
                        f"{BASE}{task.endpoint}/{task.task_id}",
                        headers=get_headers(self.ctx),
                        timeout=30,
                    )
                ).json()
                data = r["data"]
                task.status = data["task_status"]
                if task.status in ("succeed", "failed"):  # measurement only
                    self.ctx.seen_terminal_ms.setdefault(
                        task.task_id, round(self.ctx.clock.now() * 1000)
                    )
                if task.status == "succeed":
                    task.result_url = data["task_result"]["videos"][0]["url"]
                elif task.status == "failed":
                    task.error_msg = data.get("task_status_msg")
            except Exception as e:
                self.ctx.out(f"Error polling {task.task_id}: {e}")

    def print_report(self) -> None:
        by_status: dict[str, int] = {}
        for t in self.tasks.values():
            by_status.setdefault(t.status, 0)
            by_status[t.status] += 1
        active = sum(
            v for k, v in by_status.items() if k in ("submitted", "processing")
        )
        self.ctx.out(f"\n=== Batch: {len(self.tasks)} tasks, {active} active ===")
        for status, count in sorted(by_status.items()):
            self.ctx.out(f" {status}: {count}")


def detect_stuck(tracker: BatchTracker, threshold_sec: int = 600) -> list[Any]:
    """Flag tasks processing longer than threshold."""
    now = tracker.ctx.clock.now()
    stuck = []
    for t in tracker.tasks.values():
        if t.status in ("submitted", "processing"):
            elapsed = now - t.created_at
            if elapsed > threshold_sec:
                stuck.append((t.task_id, int(elapsed)))
    if stuck:
        tracker.ctx.out(f"WARNING: {len(stuck)} stuck tasks:")
        for tid, secs in stuck:
            tracker.ctx.out(f" {tid}: {secs}s")
    return stuck


async def _submit(
    ctx: SeedContext,
    tracker: BatchTracker,
    prompt: str,
    body: dict[str, Any] | None = None,
) -> None:
    """The seed's create; ``body`` (a workload's own mix) replaces its fixed fields."""
    r = (
        await ctx.http.post(
            f"{BASE}/videos/text2video",
            headers=get_headers(ctx),
            json=body or {"model_name": _MODEL, "prompt": prompt, "duration": "5"},
        )
    ).json()
    tracker.add(r["data"]["task_id"], "/videos/text2video", prompt)


def _active(tracker: BatchTracker) -> int:
    return sum(t.status in ("submitted", "processing") for t in tracker.tasks.values())


async def seed_as_written(ctx: SeedContext, prompts: list[str]) -> BatchTracker:
    """(a) Submit every prompt, then the 15 s ``update_all`` loop, exactly."""
    tracker = BatchTracker(ctx)
    # Submit batch
    for prompt in prompts:
        await _submit(ctx, tracker, prompt)
    # Monitor until all complete
    while any(t.status in ("submitted", "processing") for t in tracker.tasks.values()):
        await asyncio.sleep(15)
        await tracker.update_all()
        tracker.print_report()
        detect_stuck(tracker)
    return tracker


async def seed_fixed(
    ctx: SeedContext,
    prompts: list[str],
    slots: int,
    *,
    bodies: list[dict[str, Any]] | None = None,
    ready_at: list[float] | None = None,
) -> BatchTracker:
    """(b) The same, submitting only into free slots, again after every round.

    ``bodies``: a workload's own create bodies; ``ready_at``: per prompt, when (clock
    s) it arrives (batches that come over time); both default to the seed's.
    """
    tracker = BatchTracker(ctx)
    start = ctx.clock.now()
    queue = list(range(len(prompts)))

    def ready() -> bool:
        if not queue or _active(tracker) >= slots:
            return False
        return ready_at is None or ctx.clock.now() - start >= ready_at[queue[0]]

    async def fill() -> None:
        while ready():
            i = queue.pop(0)
            await _submit(ctx, tracker, prompts[i], bodies[i] if bodies else None)

    await fill()
    while queue or any(
        t.status in ("submitted", "processing") for t in tracker.tasks.values()
    ):
        await asyncio.sleep(15)
        await tracker.update_all()
        tracker.print_report()
        detect_stuck(tracker)
        await fill()
    return tracker
