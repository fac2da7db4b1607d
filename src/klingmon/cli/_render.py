"""Rich renderings of store data; the only place that knows what a table looks like."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from klingmon.domain import RESULT_KINDS, TERMINAL, BatchState, TaskStatus

if TYPE_CHECKING:
    from rich.console import RenderableType

    from klingmon.store import (
        BatchRow,
        EventRow,
        Report,
        SpendSummary,
        TaskRow,
        WorkerRow,
    )

__all__ = [
    "EXPIRY_WARNING_S",
    "STATUS_STYLE",
    "WatchFacts",
    "batch_progress",
    "batches_table",
    "closing_lines",
    "expiring_line",
    "expiry_warning",
    "failures_table",
    "fmt_ms",
    "report_view",
    "task_view",
    "tasks_table",
    "workers_table",
]

STATUS_STYLE: dict[TaskStatus, str] = {
    TaskStatus.QUEUED: "dim",
    TaskStatus.SUBMITTING: "cyan",
    TaskStatus.SUBMITTED: "blue",
    TaskStatus.PROCESSING: "yellow",
    TaskStatus.SUCCEED: "green",
    TaskStatus.FAILED: "red",
    TaskStatus.REJECTED: "magenta",
    TaskStatus.CANCELLED: "dim",
}
_ORDER = list(STATUS_STYLE)


def fmt_ms(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 90:
        return f"{value:.1f}s"
    if value < 5400:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def counts_text(counts: dict[TaskStatus, int]) -> Text:
    text = Text()
    for status in _ORDER:
        n = counts.get(status, 0)
        if n:
            if text:
                text.append("  ")
            text.append(f"{status.value} {n}", style=STATUS_STYLE[status])
    return text


def batches_table(rows: list[tuple[BatchRow, dict[TaskStatus, int]]]) -> Table:
    table = Table(title="Batches", show_lines=False)
    table.add_column("batch")
    table.add_column("created")
    table.add_column("priority", justify="right")
    table.add_column("tasks", justify="right")
    table.add_column("done", justify="right")
    table.add_column("by status")
    for batch, counts in rows:
        total = sum(counts.values())
        done = sum(n for s, n in counts.items() if s in TERMINAL)
        text = counts_text(counts)
        if batch.state:  # awaiting approval, paused: budget
            text.append(f"  {BatchState(batch.state).label}", style="bold yellow")
        table.add_row(
            batch.name,
            fmt_ms(batch.created_ms),
            str(batch.priority),
            str(total),
            f"{done}/{total}",
            text,
        )
    return table


@dataclass(frozen=True, slots=True)
class WatchFacts:
    """What the live view shows besides the batch's own counts."""

    elapsed: float
    #: The account's slots, and how many tasks of any batch hold one.
    slots: int
    in_use: int
    #: Other batches holding slots, and how many they hold.
    other_batches: int = 0
    other_slots: int = 0
    #: (files downloaded, files owed); None when downloads are off.
    files: tuple[int, int] | None = None
    #: What is wrong with Kling right now, and seconds before giving up.
    trouble: str | None = None
    give_up_in: float | None = None
    #: The quiet log's line (warnings held back without -v).
    log: str | None = None
    #: This batch has tasks waiting to be sent.
    queued: int = 0
    #: ``awaiting approval`` or ``paused: budget`` ("" while it runs).
    state: str = ""
    #: (pool, slots held, limit) of each pool in use, when there are several.
    pools: tuple[tuple[str, int, int], ...] = ()


def batch_progress(
    name: str,
    counts: dict[TaskStatus, int],
    *,
    eta: float | None,
    stuck: int,
    timed_out: int,
    failures: list[TaskRow],
    facts: WatchFacts | None = None,
) -> RenderableType:
    total = sum(counts.values()) or 1
    done = sum(n for s, n in counts.items() if s in TERMINAL)
    head = Text.assemble(
        (f"{name}  ", "bold"),
        f"{done}/{total} done  ",
        (f"elapsed {fmt_seconds(facts.elapsed)}  " if facts is not None else ""),
        ("ETA " + fmt_seconds(eta) if eta is not None and done < total else ""),
    )
    # A grid row of its own: a bare ProgressBar ends without a line break.
    bar = Table.grid()
    bar.add_row(ProgressBar(total=total, completed=done, width=60))
    parts: list[RenderableType] = [head, bar, counts_text(counts)]
    if facts is not None:
        parts.extend(_fact_lines(facts))
    if stuck or timed_out:
        parts.append(
            Text(f"stuck {stuck}  past deadline {timed_out} (still tracked)", "yellow")
        )
    if failures:
        parts.append(failures_table(failures))
    if facts is not None and facts.log:
        parts.append(Text(facts.log, "dim"))
    return Group(*parts)


def _fact_lines(facts: WatchFacts) -> list[RenderableType]:
    slots = f"slots {facts.in_use}/{facts.slots} in use"
    if facts.other_batches:
        one = facts.other_batches == 1
        slots += (
            f" ({facts.other_batches} other "
            f"{'batch holds' if one else 'batches hold'} "
            f"{facts.other_slots} slot{'' if facts.other_slots == 1 else 's'})"
        )
    line = Text(slots)
    if facts.files is not None:
        got, owed = facts.files
        line.append(f"   files {got} downloaded, {owed} owed")
    lines: list[RenderableType] = [line]
    if facts.pools:
        lines.append(
            Text(
                "pools  "
                + " · ".join(f"{p} {held}/{limit}" for p, held, limit in facts.pools)
            )
        )
    if facts.queued and facts.other_slots and facts.in_use >= facts.slots:
        lines.append(
            Text(
                f"{facts.queued} tasks wait for slots other batches hold "
                "(`klingmon status` lists them; `watch --all` sends them too)",
                "yellow",
            )
        )
    if facts.state:
        lines.append(Text(f"{facts.state}: nothing more of it is sent", "yellow"))
    if facts.trouble:
        note = f"! {facts.trouble} — retrying"
        if facts.give_up_in is not None:
            note += f" (giving up in {fmt_seconds(facts.give_up_in)})"
        lines.append(Text(note, "bold red"))
    return lines


def failures_table(failures: list[TaskRow], *, last: int = 5) -> Table:
    """The latest failures by row and prompt: what a person can find in their file."""
    more = len(failures) - last
    title = "Failures" if more <= 0 else f"Failures (latest {last} of {len(failures)})"
    table = Table(title=title, title_justify="left", show_header=True, box=None)
    table.add_column("row", justify="right")
    table.add_column("prompt", overflow="ellipsis", max_width=40, no_wrap=True)
    table.add_column("status")
    table.add_column("reason", overflow="fold")
    for row in failures[-last:]:
        table.add_row(
            f"#{row.seq}",
            row.prompt or row.task_id or row.external_task_id,
            Text(row.status.value, STATUS_STYLE[row.status]),
            row.status_msg or row.last_error or "-",
        )
    return table


def closing_lines(
    summary: dict[str, Any], *, out: str | None, timeout: float | None
) -> list[str]:
    """How the watch ended and what to do next, one line each."""
    name = str(summary["batch"])
    counts: dict[str, int] = dict(summary.get("counts") or {})
    total = int(summary.get("total") or 0)
    ok = counts.get(TaskStatus.SUCCEED.value, 0)
    failed = int(summary.get("failed") or 0)
    running = total - sum(n for s, n in counts.items() if TaskStatus(s) in TERMINAL)
    elapsed = fmt_seconds(float(summary.get("elapsed_s") or 0.0))
    lines = [f"{name}: {ok} of {total} succeeded, {failed} failed ({elapsed})."]
    owed = summary.get("files_owed")
    if out is None:
        lines.append(
            f"Downloads are off: fetch results with `klingmon download {name}`."
        )
    elif owed:
        files = "1 result file is" if owed == 1 else f"{owed} result files are"
        lines.append(
            f"{files} not downloaded yet (see `klingmon report {name}`); "
            f"fetch them with `klingmon download {name}`."
        )
    elif ok:
        lines.append(f"Files are under {out}.")
    if failed:
        lines.append(f"Resubmit the failed tasks with `klingmon retry {name}`.")
    if running:
        why = {
            "timeout": f"Stopped watching after {fmt_seconds(timeout)}: ",
            "stopped": "Interrupted: ",
        }.get(str(summary.get("outcome")), "")
        still = (
            "1 task still running stays"
            if running == 1
            else (f"{running} tasks still running stay")
        )
        lines.append(f"{why}{still} tracked; resume with `klingmon watch {name}`.")
    return lines


def workers_table(rows: list[WorkerRow], leases: dict[str, int], now_ms: int) -> Table:
    table = Table(title="Workers")
    table.add_column("worker")
    table.add_column("state")
    table.add_column("heartbeat", justify="right")
    table.add_column("leases", justify="right")
    table.add_column("started")
    for w in rows:
        if w.stopped_ms is not None:
            state = Text("stopped", "dim")
        elif w.alive:
            state = Text("alive", "green")
        else:
            state = Text("silent (dead?)", "red")
        table.add_row(
            w.owner,
            state,
            fmt_seconds((now_ms - w.heartbeat_ms) / 1000) + " ago",
            str(leases.get(w.owner, 0)),
            fmt_ms(w.started_ms),
        )
    return table


def tasks_table(rows: list[TaskRow], *, title: str = "Tasks") -> Table:
    table = Table(title=title)
    table.add_column("id", justify="right")
    table.add_column("task_id")
    table.add_column("status")
    table.add_column("endpoint")
    table.add_column("prompt", overflow="ellipsis", max_width=40, no_wrap=True)
    table.add_column("flags")
    for row in rows:
        flags = " ".join(
            f for f, on in (("stuck", row.stuck), ("timeout", row.watch_timeout)) if on
        )
        table.add_row(
            str(row.id),
            row.task_id or "-",
            Text(row.status.value, STATUS_STYLE[row.status]),
            row.endpoint.rsplit("/", 1)[-1],
            row.prompt or "-",
            flags,
        )
    return table


def task_view(row: TaskRow, events: list[EventRow]) -> RenderableType:
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    info.add_row("task", f"{row.id} (Kling {row.task_id or 'not yet created'})")
    info.add_row("external id", row.external_task_id)
    info.add_row("endpoint", row.endpoint)
    info.add_row("status", Text(row.status.value, STATUS_STYLE[row.status]))
    if row.status_msg:
        info.add_row("reason", row.status_msg)
    info.add_row("prompt", row.prompt or "-")
    info.add_row("created", fmt_ms(row.created_ms))
    if row.units:
        info.add_row("units", f"{row.units:g}")
    if row.cost is not None and row.cost.cash is not None:
        currency = f" {row.cost.currency}" if row.cost.currency else ""
        info.add_row("cash", f"{row.cost.cash:g}{currency}")
    for url in _urls(row.result):
        info.add_row("result", url)
    timeline = Table(title="Timeline")
    timeline.add_column("time")
    timeline.add_column("source")
    timeline.add_column("event")
    for event in events:
        what = event.kind
        if event.kind == "priority":
            what += f" {event.payload.get('old')} → {event.payload.get('new')}"
        if event.old_status or event.new_status:
            what += f" {event.old_status or '-'} → {event.new_status or '-'}"
        timeline.add_row(fmt_ms(event.at_ms), event.source, what)
    return Group(info, timeline)


def _urls(result: dict[str, Any] | None) -> list[str]:
    if not result:
        return []
    items = [i for key in RESULT_KINDS for i in result.get(key) or []]
    return [str(i.get("url")) for i in items if isinstance(i, dict) and i.get("url")]


def _spend_rows(table: Table, spent: SpendSummary, batch: BatchRow | None) -> None:
    """Quoted against charged, the ledger's states, a cap and a hold."""
    table.add_row(
        "quoted / charged",
        f"{spent.quoted:g} / {spent.charged:g} units"
        + (f" ({spent.undetermined:g} undetermined)" if spent.undetermined else ""),
    )
    if spent.tasks:
        states = ", ".join(f"{k} {v}" for k, v in sorted(spent.tasks.items()))
        table.add_row("spend ledger", states)
    if spent.failed_charged:
        table.add_row(
            "charged although failed",
            Text(f"{spent.failed_charged} tasks", style="bold red"),
        )
    if batch is not None and batch.max_units is not None:
        table.add_row("cap", f"{batch.max_units:g} units ({spent.counted:g} counted)")
    if batch is not None and batch.state:
        table.add_row("state", Text(BatchState(batch.state).label, "bold yellow"))


def _account_rows(table: Table, report: Report) -> None:
    """Each account's share, once some task went on a named one."""
    if set(report.accounts) - {"default"}:
        shares = ", ".join(
            f"{name} {a.tasks} tasks, {a.units:g} units"
            for name, a in report.accounts.items()
        )
        table.add_row("accounts", shares)


def report_view(
    name: str,
    report: Report,
    *,
    spent: SpendSummary | None = None,
    batch: BatchRow | None = None,
) -> RenderableType:
    table = Table(title=f"Report: {name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    if batch is not None:
        table.add_row("priority", str(batch.priority))
    table.add_row("tasks", str(report.total))
    table.add_row("by status", counts_text(report.by_status))
    table.add_row(
        "time in queue p50 / p95",
        f"{fmt_seconds(report.queue_p50_s)} / {fmt_seconds(report.queue_p95_s)}",
    )
    table.add_row(
        "time processing p50 / p95",
        " / ".join(
            fmt_seconds(v) for v in (report.processing_p50_s, report.processing_p95_s)
        ),
    )
    table.add_row("units spent", f"{report.units:g}")
    if spent is not None:
        _spend_rows(table, spent, batch)
    if report.cash:
        cash = ", ".join(f"{v:g} {k}".rstrip() for k, v in sorted(report.cash.items()))
        table.add_row("cash spent", cash)
    _account_rows(table, report)
    table.add_row("stuck / past deadline", f"{report.stuck} / {report.watch_timeout}")
    if report.statuses_via:
        via = ", ".join(f"{k} {v}" for k, v in sorted(report.statuses_via.items()))
        table.add_row("status changes by", via)
    if report.learned_via:
        via = ", ".join(f"{k} {v}" for k, v in sorted(report.learned_via.items()))
        table.add_row("statuses learned by", via)
    if report.requests:
        reqs = ", ".join(f"{k} {v}" for k, v in sorted(report.requests.items()))
        table.add_row("API requests", reqs)
        if report.requests_per_task is not None:
            table.add_row("requests per task", f"{report.requests_per_task:.2f}")
    if report.downloads:
        files = ", ".join(f"{k} {v}" for k, v in sorted(report.downloads.items()))
        table.add_row("result files", files)
    parts: list[RenderableType] = [table]
    warning = expiry_warning(report.downloads, report.first_owed_expiry_ms)
    if warning is not None:
        parts.append(warning)
    if report.failures:
        reasons = Table(title="Failure reasons")
        reasons.add_column("reason")
        reasons.add_column("tasks", justify="right")
        for reason, n in sorted(report.failures.items(), key=lambda kv: -kv[1]):
            reasons.add_row(reason or "(none given)", str(n))
        parts.append(reasons)
    return Group(*parts)


#: Warn about results not downloaded this long before Kling deletes them.
EXPIRY_WARNING_S = 3 * 86_400.0


def expiry_warning(
    files: dict[str, int], first_owed_ms: int | None, now: float | None = None
) -> Text | None:
    """A warning line when results not yet downloaded are deleted soon."""
    owed = sum(n for status, n in files.items() if status not in {"done", "expiring"})
    if not owed or first_owed_ms is None:
        return None
    left = first_owed_ms / 1000 - (time.time() if now is None else now)
    if left > EXPIRY_WARNING_S:
        return None
    when = "already past" if left <= 0 else f"in {fmt_seconds(left)}"
    return Text(
        f"! {owed} result files not downloaded; Kling deletes the first {when} "
        "(klingmon download --expiring 3d)",
        style="bold yellow",
    )


def expiring_line(expiring: int) -> Text | None:
    """The watch view's warning: results not downloaded that Kling deletes soon."""
    if not expiring:
        return None
    return Text(
        f"! {expiring} result files not downloaded are deleted within "
        f"{fmt_seconds(EXPIRY_WARNING_S)} (klingmon download --expiring 3d)",
        style="bold yellow",
    )
