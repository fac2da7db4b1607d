"""``watch`` and ``worker``: run the engine, with a live view for people.

``watch NAME`` sends that batch only (other stored batches wait unless ``--all``),
says at once when Kling cannot be reached or refuses the credentials, gives up
with exit 4 after ``--give-up-after`` seconds without a single answer, ends with
exit 6 after ``--timeout`` seconds, and never exits 0 while result files are owed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer
from rich.console import Group
from rich.live import Live

from klingmon._clock import to_ms
from klingmon.cli._app import app
from klingmon.cli._context import (
    Context,
    emit_json,
    get_context,
    invocation,
    run_async,
)
from klingmon.cli._hook_options import (
    ForwardSecret,
    ForwardUrl,
    HookCommand,
    HookEnv,
    Notify,
)
from klingmon.cli._render import (
    EXPIRY_WARNING_S,
    WatchFacts,
    batch_progress,
    closing_lines,
    expiring_line,
)
from klingmon.domain import FAILURES, TERMINAL, BatchState, TaskStatus
from klingmon.engine import (
    DEFAULT_GIVE_UP_AFTER,
    Health,
    HealthTransport,
    env_transport,
)
from klingmon.errors import (
    ApiError,
    ExitCode,
    InterruptedRunError,
    NotFoundError,
    TransportError,
)
from klingmon.hooks import install_hooks
from klingmon.policy import Phase

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import RenderableType

    from klingmon.engine import Monitor
    from klingmon.store import BatchRow, TaskRow

__all__ = ["WatchPlan", "batch_summary", "run_watch", "watch_batch"]

_FAILED = FAILURES
#: Seconds a stopped engine gets to finish its round before it is cancelled (a
#: cancelled create stays ``submitting`` and is looked up before any resend).
_STOP_GRACE = 3.0
#: Seconds between two redraws (and two looks at the deadlines).
_TICK = 0.5


class GaveUpError(TransportError):
    """No answer from Kling for the time allowed; every task stays stored."""


@dataclass(frozen=True, slots=True)
class WatchPlan:
    """What the user asked of one watch."""

    #: End the watch after this many seconds (exit 6); None: until done.
    timeout: float | None = None
    #: Give up after this many seconds without any answer from Kling (exit 4).
    give_up_after: float | None = DEFAULT_GIVE_UP_AFTER
    #: Send every stored batch, not just this one.
    every_batch: bool = False


@dataclass
class _Session:
    """One watch in progress: what the view and the closing summary read."""

    monitor: Monitor
    batch: BatchRow
    health: Health | None = None
    started: float = 0.0
    log: _ViewLog | None = None
    outcome: str = "running"
    said: set[str] = field(default_factory=set)

    def elapsed(self) -> float:
        return max(0.0, self.monitor.clock.now() - self.started)


class _ViewLog(logging.Handler):
    """Keeps warnings out of the terminal while the live view owns it (``-v``
    prints them as usual): the view shows their count and the latest one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.events: Counter[str] = Counter()
        self.latest: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.events[record.getMessage()] += 1
        self.latest = record.getMessage()

    def line(self) -> str | None:
        if not self.events:
            return None
        n = sum(self.events.values())
        return f"{n} log warnings, latest {self.latest} (run with -v to see them)"


@contextlib.contextmanager
def _quiet_log() -> Iterator[_ViewLog | None]:
    root = logging.getLogger("klingmon")
    if root.getEffectiveLevel() < logging.WARNING:  # -v: the user wants the lines
        yield None
        return
    saved = root.handlers[:]
    view = _ViewLog()
    root.handlers[:] = [view]
    try:
        yield view
    finally:
        root.handlers[:] = saved


def batch_summary(monitor: Monitor, batch: BatchRow) -> dict[str, object]:
    counts = monitor.store.tasks.count_by_status(batch.id)
    current = monitor.store.tasks.batch(batch.id) or batch
    summary: dict[str, object] = {
        "batch": batch.name,
        "priority": current.priority,
        "total": sum(counts.values()),
        "counts": {s.value: n for s, n in counts.items() if n},
        "done": all(s in TERMINAL for s, n in counts.items() if n),
        "failed": sum(counts.get(s, 0) for s in _FAILED),
    }
    if current.state:
        # ``awaiting_approval`` or ``paused_budget``: nothing more of it is sent.
        spent = monitor.store.spend.summary(batch.id)
        summary |= {
            "state": current.state,
            "quoted_units": round(spent.quoted, 4),
            "charged_units": round(spent.charged, 4),
        }
    return summary


def _eta(monitor: Monitor, rows: list[TaskRow]) -> float | None:
    """Remaining time from the learned durations and the account's slots.

    Tasks past their deadline are left out: no estimate is honest for them.
    """
    waiting = [r for r in rows if r.status == TaskStatus.QUEUED and not r.watch_timeout]
    active = [
        r
        for r in rows
        if r.status not in TERMINAL
        and r.status != TaskStatus.QUEUED
        and not r.watch_timeout
    ]
    if not waiting and not active:
        return None
    engine = monitor.engine()
    key = (waiting or active)[0].key
    per_task = engine.book.get(key, Phase.SUBMITTED).quantile(0.5) + engine.book.get(
        key, Phase.PROCESSING
    ).quantile(0.5)
    slots = max(1, monitor.settings.slots)
    rounds = (len(waiting) + len(active)) / slots
    return rounds * per_task


def _facts(session: _Session, rows: list[TaskRow]) -> WatchFacts:
    monitor, batch = session.monitor, session.batch
    holding = monitor.store.reports.slots_by_batch()
    others = {b: n for b, n in holding.items() if b != batch.id and n}
    files: tuple[int, int] | None = None
    if monitor.settings.downloads is not None:
        counts = monitor.store.downloads.download_counts(batch.id)
        owed = monitor.store.downloads.files_owed(batch.id)
        files = (counts.get("done", 0), owed)
    health = session.health
    trouble = None if health is None else health.trouble()
    left = None if health is None else health.left()
    engine = monitor.engine()
    pools = tuple(
        (u.pool, u.held, engine.governor.limit(u.pool))
        for u in monitor.store.tasks.pool_use(to_ms(engine.clock.now()))
    )
    return WatchFacts(
        elapsed=session.elapsed(),
        slots=monitor.settings.slots,
        pools=pools if len(pools) > 1 else (),
        in_use=sum(holding.values()),
        other_batches=len(others),
        other_slots=sum(others.values()),
        files=files,
        trouble=trouble,
        give_up_in=left,
        log=None if session.log is None else session.log.line(),
        queued=sum(1 for r in rows if r.status == TaskStatus.QUEUED),
        state=_state_of(monitor, batch.id),
    )


def _state_of(monitor: Monitor, batch_id: int) -> str:
    row = monitor.store.tasks.batch(batch_id)
    return BatchState(row.state).label if row is not None and row.state else ""


def _view(
    monitor: Monitor, batch: BatchRow, session: _Session | None = None
) -> RenderableType:
    rows = monitor.store.tasks.tasks(batch.id)
    counts: dict[TaskStatus, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    failures = [r for r in rows if r.status in _FAILED]
    # Read again: `klingmon priority` may change it while the watch runs.
    current = monitor.store.tasks.batch(batch.id) or batch
    ranked = f" (priority {current.priority})" if current.priority else ""
    view = batch_progress(
        batch.name + ranked,
        counts,
        eta=_eta(monitor, rows),
        stuck=sum(1 for r in rows if r.stuck and r.status not in TERMINAL),
        timed_out=sum(1 for r in rows if r.watch_timeout and r.status not in TERMINAL),
        failures=failures,
        facts=None if session is None else _facts(session, rows),
    )
    # downloads: warn when results not yet downloaded are deleted soon
    files = monitor.store.downloads.download_counts(
        batch.id,
        now_ms=to_ms(monitor.clock.now()),
        within_ms=to_ms(EXPIRY_WARNING_S),
    )
    warning = expiring_line(files["expiring"])
    return view if warning is None else Group(view, warning)


async def watch_batch(
    context: Context,
    monitor: Monitor,
    batch: BatchRow,
    *,
    live: bool,
    plan: WatchPlan | None = None,
    health: Health | None = None,
) -> dict[str, object]:
    """Run the engine until the batch is done, redrawing the live view meanwhile.

    The summary's ``outcome`` says why it ended: ``done``, ``stopped`` (a signal),
    ``timeout`` (``plan.timeout`` passed) or ``gave_up`` (Kling silent too long).
    """
    plan = plan or WatchPlan()
    session = _Session(monitor, batch, health=health, started=monitor.clock.now())
    work = monitor.run() if plan.every_batch else monitor.run(batch=batch.id)
    with _quiet_log() as log:
        session.log = log
        runner = asyncio.create_task(work, name="klingmon-engine")
        try:
            await _follow(context, session, runner, plan, live=live)
        finally:
            if not runner.done():
                monitor.stop()
                await _settle(runner)
        if runner.done() and not runner.cancelled():
            runner.result()  # the engine's own error (a refusal, the store) wins
    summary = batch_summary(monitor, batch)
    if session.outcome == "running":
        held = not summary["done"] and summary.get("state") is not None
        session.outcome = "done" if summary["done"] else "held" if held else "stopped"
    summary["outcome"] = session.outcome
    summary["elapsed_s"] = round(session.elapsed(), 1)
    if monitor.settings.downloads is not None:
        summary["files_owed"] = monitor.store.downloads.files_owed(batch.id)
    if live and not context.console.is_terminal:
        context.console.print(_view(monitor, batch, session))
    return summary


async def _follow(
    context: Context,
    session: _Session,
    runner: asyncio.Task[None],
    plan: WatchPlan,
    *,
    live: bool,
) -> None:
    """Wait for the engine, redrawing, and end it when a deadline says so."""
    monitor, batch = session.monitor, session.batch
    display = (
        Live(
            _view(monitor, batch, session), console=context.console, auto_refresh=False
        )
        if live and context.console.is_terminal
        else None
    )
    with display if display is not None else contextlib.nullcontext():
        while not runner.done():
            await asyncio.wait({runner}, timeout=_TICK)
            if display is not None:
                display.update(_view(monitor, batch, session), refresh=True)
            else:
                _say_trouble(context, session)
            if session.health is not None and session.health.gave_up():
                session.outcome = "gave_up"
                return
            if plan.timeout is not None and session.elapsed() >= plan.timeout:
                session.outcome = "timeout"
                return


def _say_trouble(context: Context, session: _Session) -> None:
    """Without a live view, each new trouble is one line on stderr, at once."""
    health = session.health
    trouble = None if health is None else health.trouble()
    if trouble is None or trouble in session.said:
        return
    session.said.add(trouble)
    context.err.print(f"! {trouble} — retrying", markup=False, highlight=False)


async def _settle(runner: asyncio.Task[None]) -> None:
    """Let a stopped engine finish its round; cancel it if a request hangs on."""
    done, _ = await asyncio.wait({runner}, timeout=_STOP_GRACE)
    if not done:
        runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait({runner})


def run_watch(
    context: Context,
    batch: BatchRow,
    *,
    as_json: bool,
    plan: WatchPlan,
) -> None:
    """``watch`` and ``submit --watch``: run, then say how it ended; exits non-zero
    unless every task succeeded and every file is on disk."""
    transport = HealthTransport(env_transport(context.settings.api_base))
    monitor = context.engine_monitor(transport=transport)
    health = Health(monitor.clock, give_up_after=plan.give_up_after)
    transport.health = health
    name = batch.name
    try:
        summary = run_async(
            _watch_and_close(
                context, monitor, batch, live=not as_json, plan=plan, health=health
            ),
            stop=monitor.stop,
        )
    except (ApiError, TransportError) as exc:
        # Kling refused or failed for good (bad credentials, an account problem):
        # the tasks are stored, so say how to carry on once it is fixed.
        exc.message += f"; nothing is lost; resume with `klingmon watch {name}`"
        exc.args = (exc.message,)
        raise
    if summary["outcome"] == "gave_up":
        after = plan.give_up_after or 0.0
        raise GaveUpError(
            f"{health.last_error or 'Kling did not answer'}; no answer from Kling "
            f"for {after:g} s, so klingmon stopped — nothing is lost; resume with "
            f"`klingmon watch {name}`"
        )
    if as_json:
        emit_json(summary)  # a stopped watch's summary too: scripts read it
    if summary["outcome"] == "stopped":
        raise InterruptedRunError(name, program=invocation())
    if summary["outcome"] == "held":
        if not as_json:
            context.err.print(
                held_line(name, str(summary["state"]), summary),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        raise typer.Exit(ExitCode.OK)
    if not as_json:
        out = None
        if monitor.settings.downloads is not None:
            out = monitor.settings.downloads.out
        for line in closing_lines(summary, out=out, timeout=plan.timeout):
            context.err.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(_exit_code(summary))


def held_line(name: str, state: str, summary: dict[str, object]) -> str:
    """What a watch that ends on a held batch says: why, and how it goes on."""
    counts = summary.get("counts")
    queued = counts.get("queued", 0) if isinstance(counts, dict) else 0
    if state == BatchState.AWAITING_APPROVAL:
        how = f"`klingmon approve {name}` sends it"
    else:
        how = f"`klingmon resume {name} --max-units N` goes on"
    return (
        f"Batch {name} is {BatchState(state).label}: {queued} tasks still queued, "
        f"{summary.get('charged_units', 0)} units charged; {how}."
    )


def _exit_code(summary: dict[str, object]) -> int:
    """Files owed beat failures (a paid result at risk), failures beat the rest."""
    if summary["outcome"] == "timeout":
        return ExitCode.DEADLINE
    if summary.get("files_owed"):
        return ExitCode.KLING
    if summary["failed"]:
        return ExitCode.TASKS_FAILED
    return ExitCode.OK


async def _watch_and_close(
    context: Context,
    monitor: Monitor,
    batch: BatchRow,
    *,
    live: bool,
    plan: WatchPlan | None = None,
    health: Health | None = None,
) -> dict[str, object]:
    try:
        return await watch_batch(
            context, monitor, batch, live=live, plan=plan, health=health
        )
    finally:
        with contextlib.suppress(Exception):
            await monitor.close_clients()


def _pick_batch(monitor: Monitor, ref: str | None) -> BatchRow:
    if ref is None:
        batches = monitor.store.tasks.batches()
        if not batches:
            raise NotFoundError(
                "no batches yet; submit one with `klingmon submit FILE`"
            )
        return batches[-1]
    row = monitor.store.tasks.batch(int(ref) if ref.isdigit() else ref)
    if row is None:
        raise NotFoundError(f"no batch {ref!r}; `klingmon status` lists the batches")
    return row


TimeoutOption = typer.Option(
    None,
    "--timeout",
    min=0.0,
    help="Stop watching after this many seconds (exit 6); tasks stay tracked.",
)
GiveUpOption = typer.Option(
    DEFAULT_GIVE_UP_AFTER,
    "--give-up-after",
    min=0.0,
    envvar="KLINGMON_GIVE_UP_AFTER",
    help="Seconds of failing requests without any answer from Kling before "
    "exiting 4 (nothing is lost; watch resumes).",
)


@app.command()
def watch(
    ctx: typer.Context,
    batch: str | None = typer.Argument(
        None, help="Batch name or id (default: newest)."
    ),
    every_batch: bool = typer.Option(
        False,
        "--all",
        help="Send every stored batch's tasks too (default: this batch's only).",
    ),
    timeout: float | None = TimeoutOption,
    give_up_after: float = GiveUpOption,
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON summary at the end."
    ),
) -> None:
    """Send one batch and watch it to the end.

    Exits 0 when every task succeeded and every file is on disk, 4 when Kling
    could not be reached or files are owed, 5 when tasks failed, 6 on --timeout.
    """
    context = get_context(ctx)
    row = _pick_batch(context.monitor(), batch)
    plan = WatchPlan(
        timeout=timeout, give_up_after=give_up_after, every_batch=every_batch
    )
    run_watch(context, row, as_json=as_json, plan=plan)


@app.command()
def worker(
    ctx: typer.Context,
    hook_command: HookCommand = None,
    forward_url: ForwardUrl = None,
    forward_secret: ForwardSecret = None,
    notify: Notify = None,
    hook_env: HookEnv = None,
) -> None:
    """Run the engine for every batch until SIGINT/SIGTERM (no display).

    Several workers may share one PostgreSQL store: they split the work through
    leases, never exceed the account's slots between them, and take over from one
    that dies.
    """
    context = get_context(ctx)
    monitor = context.engine_monitor()
    install_hooks(
        monitor.hooks,
        store=monitor.store,
        command=hook_command,
        forward_url=forward_url,
        forward_secret=forward_secret,
        notify=notify or (),
        hook_env=hook_env or (),
    )

    async def run() -> None:
        try:
            await monitor.run(forever=True)
        finally:
            await monitor.close_clients()

    run_async(run(), stop=monitor.stop)
