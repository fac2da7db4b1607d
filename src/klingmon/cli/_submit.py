"""``submit``, ``retry``, ``track`` and ``import``: commands that add work."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from klingmon.batchfile import read_batch_file
from klingmon.cli._app import app
from klingmon.cli._context import Context, emit_json, get_context, run_async
from klingmon.cli._download import parse_span
from klingmon.cli._preflight import (
    check_generations,
    check_kling,
    ensure_name_free,
    open_client,
    taken_batch,
)
from klingmon.cli._priority import PriorityOption
from klingmon.cli._spend import quote_of, say_expiring, say_quote
from klingmon.cli._unsent import unsent_line, unsent_lines
from klingmon.cli._watch import GiveUpOption, WatchPlan, _pick_batch, run_watch
from klingmon.domain import BatchState, TaskStatus
from klingmon.errors import (
    ConfigError,
    ExitCode,
    KlingmonError,
    NameTakenError,
    UsageError,
)
from klingmon.policy import DEFAULT_ACCOUNT, is_moderation_failure

if TYPE_CHECKING:
    from collections.abc import Iterable

    from klingmon.api import TaskRequest
    from klingmon.store import BatchRow

__all__: list[str] = []


#: ``submit --account NAME``, repeatable: the accounts a batch may be sent on.
AccountOption: Any = typer.Option(
    None,
    "--account",
    help="An account (an [accounts.NAME] of klingmon.toml, or default) the batch "
    "may be sent on; repeat it to spread the batch over several, each task going "
    "to the one with the most free slots (default: the unnamed account).",
)
#: ``track`` / ``import --account NAME``: the account the tasks are on.
OneAccountOption: Any = typer.Option(
    None,
    "--account",
    help="The account the tasks were created on (default: the unnamed one).",
)


def _named(name: str) -> str | None:
    """None for the default account: its batches are stored as before."""
    return None if name == DEFAULT_ACCOUNT else name


@app.command()
def submit(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., help=".txt (a prompt a line), .csv or .jsonl (a task a row)."
    ),
    batch: str | None = typer.Option(None, "--batch", "-b", help="Batch name."),
    endpoint: str = typer.Option(
        "text2video", "--endpoint", help="Endpoint for rows that name none."
    ),
    model_name: str | None = typer.Option(None, "--model-name", help="Default model."),
    mode: str | None = typer.Option(None, "--mode", help="Default mode: std or pro."),
    duration: str | None = typer.Option(
        None, "--duration", help="Default seconds (the model says which: 5, 10, 3-15)."
    ),
    aspect_ratio: str | None = typer.Option(
        None, "--aspect-ratio", help="Default aspect ratio: 16:9, 9:16 or 1:1."
    ),
    cfg_scale: float | None = typer.Option(
        None, "--cfg-scale", help="Default prompt adherence, 0 to 1."
    ),
    negative_prompt: str | None = typer.Option(
        None, "--negative-prompt", help="Default negative prompt."
    ),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        help="Seconds after which unfinished tasks are flagged; with --watch, "
        "the watch ends then too (exit 6, tasks stay tracked).",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Validate the file and the name, and quote it (see `klingmon quote`); "
        "nothing is stored.",
    ),
    hold: bool = typer.Option(
        False,
        "--hold",
        help="Store it awaiting approval with its quote; `klingmon approve` sends "
        "it (KLINGMON_REQUIRE_APPROVAL does this for every batch).",
    ),
    max_units: float | None = typer.Option(
        None,
        "--max-units",
        min=0,
        help="Cap on the units the batch may spend (reserved plus charged); past "
        "it the batch pauses until `klingmon resume BATCH --max-units N`.",
    ),
    allow_repeats: bool = typer.Option(
        False,
        "--allow-repeats",
        help="Send rows identical to tasks that already succeeded (by default they "
        "are stored as repeats, linked to the earlier result, and not paid again).",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Store it even when its quote exceeds the packs' remaining units.",
    ),
    watch: bool = typer.Option(False, "--watch", "-w", help="Watch until done."),
    preflight: bool = typer.Option(
        True,
        "--preflight/--no-preflight",
        envvar="KLINGMON_PREFLIGHT",
        help=(
            "Before storing, check the credentials and the API base with one "
            "list call; --no-preflight stores without contacting Kling."
        ),
    ),
    give_up_after: float = GiveUpOption,
    priority: int = PriorityOption,
    account: list[str] | None = AccountOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Store a batch from a file (all rows or none); --watch runs it.

    Nothing is stored unless the file is valid, the name is free and (unless
    --no-preflight) Kling answers and accepts the credentials.
    """
    context = get_context(ctx)
    defaults: dict[str, Any] = {
        "model_name": model_name,
        "mode": mode,
        "duration": duration,
        "aspect_ratio": aspect_ratio,
        "cfg_scale": cfg_scale,
        "negative_prompt": negative_prompt,
    }
    # said first, so that one dry run shows every mistake
    taken = dry_run and _say_if_taken(context, batch)
    rows = read_batch_file(file, defaults=defaults, endpoint=endpoint)
    _say_lines(context, (w for r in rows for w in _warned(r.warning_lines(str(file)))))
    endpoints = [r.request.endpoint_path() for r in rows]
    store = context.store()
    accounts = sorted(set(account or [DEFAULT_ACCOUNT]))
    if dry_run:
        unreachable = _say_if_unreachable(context, endpoints, accounts)
        quote, why = quote_of(
            context,
            [r.request for r in rows],
            accounts=accounts if unreachable is None else [],
        )
        if not as_json:
            say_quote(context, quote, why=why)
            say_expiring(context)
        _say_dry_run(
            context,
            file,
            len(rows),
            batch,
            taken=taken,
            as_json=as_json,
            unreachable=unreachable,
            quote=quote.to_json(),
        )
        return
    if batch is not None:
        ensure_name_free(store, batch)
    check_generations(
        context.settings,
        endpoints,
        stored_later=not (watch or preflight),
        accounts=accounts,
    )
    _check_before_storing(context, accounts, watch=watch, preflight=preflight)
    if preflight:
        _account_preflight(context, [r.request for r in rows], accounts, force=force)
    others = unsent_lines(store)
    stored = context.monitor().submit(
        (r.request for r in rows),
        batch=batch,
        timeout=timeout,
        priority=priority,
        hold=True if hold else None,
        max_units=max_units,
        allow_repeats=allow_repeats,
        accounts=None if accounts == [DEFAULT_ACCOUNT] else accounts,
    )
    if not watch:
        _say_stored(context, stored, len(rows), as_json=as_json)
        return
    _say_lines(context, others)
    # Only this batch is sent: other stored batches wait for their own watch.
    plan = WatchPlan(timeout=timeout, give_up_after=give_up_after)
    try:
        run_watch(context, stored, as_json=as_json, plan=plan)
    except KlingmonError:
        _say_unsent(context, stored.id)
        raise


def _account_preflight(
    context: Context,
    requests: list[TaskRequest],
    accounts: list[str],
    *,
    force: bool,
) -> None:
    """The packs' remaining units must cover the quote (when Kling says them;
    ``force``: not asked); a pack about to expire with units left is pointed out.
    A batch on several accounts is covered by what their packs have together."""
    if force:
        say_expiring(context)
        return
    quote, _ = quote_of(context, requests, accounts=accounts)
    say_expiring(context)
    if quote.covered is False:
        whose = (
            "the packs"
            if accounts == [DEFAULT_ACCOUNT]
            else ("the packs of " + ", ".join(accounts))
        )
        raise UsageError(
            f"the batch is quoted at {quote.units:g} units but {whose} have "
            f"{quote.remaining:g} left; nothing was stored (--force stores it anyway)"
        )


def _warned(lines: Iterable[str]) -> Iterable[str]:
    return (f"Warning: {line}" for line in lines)


def _say_if_unreachable(
    context: Context, endpoints: list[str], accounts: list[str]
) -> str | None:
    """A dry run sends nothing, but says when these credentials could not send it."""
    try:
        check_generations(
            context.settings, endpoints, stored_later=True, accounts=accounts
        )
    except ConfigError as exc:
        message = exc.message.removesuffix("; nothing was stored")
        context.err.print(f"Error: {message}", markup=False, soft_wrap=True)
        return message
    return None


def _say_if_taken(context: Context, batch: str | None) -> bool:
    """Whether a dry run's ``--batch`` name is taken; if so, one error line says it."""
    if batch is None or taken_batch(context.store(), batch) is None:
        return False
    context.err.print(
        f"Error: a batch named {batch!r} already exists; choose another --batch",
        markup=False,
        soft_wrap=True,
    )
    return True


def _say_dry_run(
    context: Context,
    file: Path,
    tasks: int,
    batch: str | None,
    *,
    taken: bool,
    as_json: bool,
    unreachable: str | None = None,
    quote: dict[str, Any] | None = None,
) -> None:
    """What a dry run found; exit 2 when the name is taken or the credentials
    cannot reach the rows' endpoints (nothing is stored either way)."""
    failed = taken or unreachable is not None
    if as_json:
        answer: dict[str, Any] = {
            "valid": not failed,
            "tasks": tasks,
            "file": str(file),
        }
        if quote is not None:
            answer["quote"] = quote
        if batch is not None:
            answer.update(batch=batch, batch_free=not taken)
        if unreachable is not None:
            answer["credentials"] = unreachable
        emit_json(answer)
    elif not failed:
        name = f"batch name {batch!r} is free" if batch else "a fresh name"
        context.err.print(
            f"{file}: {tasks} tasks, all valid; {name} (nothing stored)",
            markup=False,
            soft_wrap=True,
        )
    if failed:
        raise typer.Exit(ExitCode.USAGE)


def _check_before_storing(
    context: Context, accounts: list[str], *, watch: bool, preflight: bool
) -> None:
    """Credentials first (exit 2, none stored), then the preflight's one list call,
    for every account the batch may be sent on."""
    if watch or preflight:
        for name in accounts:
            open_client(context.settings, name).close()
    if not preflight:
        return
    for name in accounts:
        warning = check_kling(context.settings, name)
        if warning:
            context.err.print(
                f"Warning: {escape(warning)}", highlight=False, soft_wrap=True
            )


def _say_stored(
    context: Context, stored: BatchRow, tasks: int, *, as_json: bool
) -> None:
    """A batch stored without ``--watch``: its name, then what else waits unsent."""
    if as_json:
        emit_json(
            {
                "batch": stored.name,
                "id": stored.id,
                "tasks": tasks,
                "priority": stored.priority,
                "state": stored.state,
                "quote": stored.quote,
            }
        )
        return
    ranked = f" at priority {stored.priority}" if stored.priority else ""
    context.err.print(
        f"Stored batch {escape(stored.name)} with {tasks} tasks{ranked}.",
        highlight=False,
        soft_wrap=True,
    )
    repeats = [t for t in context.store().tasks.tasks(stored.id) if t.repeat_of]
    if repeats:
        shown = ", ".join(f"#{t.seq} = task {t.repeat_of}" for t in repeats[:5])
        more = f" and {len(repeats) - 5} more" if len(repeats) > 5 else ""
        context.err.print(
            f"Skipped {len(repeats)} rows identical to tasks that already succeeded "
            f"({shown}{more}); they are linked, not sent (--allow-repeats sends "
            "them).",
            highlight=False,
            soft_wrap=True,
        )
    if stored.state == BatchState.AWAITING_APPROVAL:
        units = (stored.quote or {}).get("units")
        context.err.print(
            f"It is awaiting approval (quoted at {units} units): nothing is sent "
            f"before `klingmon approve {escape(stored.name)}`.",
            highlight=False,
            soft_wrap=True,
        )
    _say_lines(context, unsent_lines(context.store()))


def _say_lines(context: Context, lines: Iterable[str]) -> None:
    for line in lines:
        context.err.print(escape(line), highlight=False, soft_wrap=True)


def _say_unsent(context: Context, batch_id: int) -> None:
    """After a failed run: the line that says what of the batch is still unsent."""
    for line in unsent_lines(context.store(), batch_id):
        context.err.print(escape(line), highlight=False, soft_wrap=True)


@app.command()
def retry(
    ctx: typer.Context,
    batch: str = typer.Argument(..., help="The batch whose failures to resubmit."),
    name: str | None = typer.Option(
        None, "--batch", "-b", help="Name of the new batch (default: BATCH-retry)."
    ),
    old_name: str | None = typer.Option(
        None, "--name", hidden=True, help="The old spelling of --batch."
    ),
    include_moderated: bool = typer.Option(
        False,
        "--include-moderated",
        help="Resend tasks Kling refused for their content too (they fail again "
        "unless edited).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Store failed and rejected tasks again, as a new linked batch.

    Tasks that failed content moderation are left out unless --include-moderated.
    """
    context = get_context(ctx)
    name = name or old_name
    monitor = context.monitor()
    old = _pick_batch(monitor, batch)
    if name is None and monitor.store.tasks.batch(f"{old.name}-retry") is not None:
        again = f"{old.name}-retry"
        raise NameTakenError(
            f"batch {old.name} was already retried as {again}: `klingmon watch "
            f"{again}` runs it, `klingmon retry {again}` retries its failures, "
            f"--batch NEW retries {old.name} once more"
        )
    new_name = name or f"{old.name}-retry"
    ensure_name_free(monitor.store, new_name)
    failed = monitor.store.tasks.tasks(
        old.id, statuses=[TaskStatus.FAILED, TaskStatus.REJECTED]
    )
    moderated = sum(
        is_moderation_failure(t.status, t.status_msg, t.last_error) for t in failed
    )
    skipped = 0 if include_moderated else moderated
    why = (
        "sent again unchanged they fail the same way: edit their prompts, or pass "
        "--include-moderated"
    )
    if failed and skipped == len(failed):
        raise UsageError(
            f"nothing to retry in batch {old.name}: its {len(failed)} failed tasks "
            f"all failed content moderation; {why}"
        )
    new = monitor.retry(old.id, name=new_name, skip_moderated=not include_moderated)
    count = len(failed) - skipped
    if as_json:
        emit_json(
            {
                "batch": new.name,
                "id": new.id,
                "tasks": count,
                "retry_of": old.name,
                "skipped_moderated": skipped,
            }
        )
        return
    context.err.print(
        f"Stored batch {escape(new.name)} retrying {count} tasks of "
        f"{escape(old.name)}.",
        highlight=False,
        soft_wrap=True,
    )
    if skipped:
        noun = "task" if skipped == 1 else "tasks"
        context.err.print(
            f"Skipped {skipped} {noun} that failed content moderation ({why}).",
            highlight=False,
            soft_wrap=True,
        )
    context.err.print(
        escape(unsent_line(new.name, count)), highlight=False, soft_wrap=True
    )


@app.command()
def track(
    ctx: typer.Context,
    task_ids: list[str] = typer.Argument(..., help="Kling task ids to adopt."),
    endpoint: str = typer.Option(
        "text2video",
        "--endpoint",
        help="The endpoint the tasks were created on: text2video, a /v1/... path, "
        "or a new-generation /<family>/<model> path (asked by id in batches).",
    ),
    batch: str | None = typer.Option(
        None, "--batch", "-b", help="Batch name (default: a dated name)."
    ),
    account: str | None = OneAccountOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Adopt tasks created elsewhere so they are watched and collected."""
    context = get_context(ctx)
    name = account or DEFAULT_ACCOUNT
    check_generations(context.settings, [endpoint], accounts=[name])
    monitor = context.monitor()

    async def adopt() -> Any:
        try:
            return await monitor.track(
                endpoint, task_ids, batch=batch, account=_named(name)
            )
        finally:
            await monitor.close_clients()

    known = monitor.tracked_where(task_ids)
    row = run_async(adopt())
    count = len(monitor.store.tasks.tasks(row.id))
    if as_json:
        emit_json({"batch": row.name, "id": row.id, "tasks": count})
    else:
        if known:
            context.err.print(f"Already tracked: {known}", markup=False)
        context.err.print(f"Tracking {count} tasks in batch [bold]{row.name}[/].")


@app.command("import")
def import_(
    ctx: typer.Context,
    endpoint: str = typer.Option(
        "text2video",
        "--endpoint",
        help="The endpoint whose tasks to list; a new-generation /<family>/<model> "
        "path pages POST /tasks for its product type (video, image, try_on).",
    ),
    pages: int = typer.Option(
        1, "--pages", min=1, max=1000, help="Pages of 500 tasks to read."
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help="New generation: only tasks created within this span (7d, 12h); "
        "default Kling's window, the last 30 days.",
    ),
    batch: str | None = typer.Option(
        None, "--batch", "-b", help="Batch name (default: a dated name)."
    ),
    account: str | None = OneAccountOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Adopt the account's recent tasks of an endpoint (list pages, or POST /tasks)."""
    context = get_context(ctx)
    name = account or DEFAULT_ACCOUNT
    check_generations(context.settings, [endpoint], accounts=[name])
    since_ms = None
    if since is not None:
        since_ms = int((time.time() - parse_span(since)) * 1000)
    monitor = context.monitor()

    async def adopt() -> Any:
        try:
            return await monitor.import_recent(
                endpoint,
                pages=pages,
                batch=batch,
                since_ms=since_ms,
                account=_named(name),
            )
        finally:
            await monitor.close_clients()

    row = run_async(adopt())
    count = len(monitor.store.tasks.tasks(row.id))
    if as_json:
        emit_json({"batch": row.name, "id": row.id, "tasks": count})
    else:
        context.err.print(f"Imported {count} tasks into batch [bold]{row.name}[/].")
