"""``download`` and ``verify``: bring results home before Kling deletes them.

``download`` uses the engine's download configuration: the global
``--download-dir`` (``./klingmon-downloads``) and ``--download-origin``, from
:class:`~klingmon.config.Settings`; ``--out`` only overrides the folder for one run.

Exit codes: ``download`` 0 when every selected file is on disk, 4 when some failed,
were refused or expired; ``verify`` 0 when every downloaded file is intact, 5 when
some are missing or changed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from klingmon._clock import SystemClock, to_ms
from klingmon.cli._app import app
from klingmon.cli._context import emit_json, get_context, run_async
from klingmon.downloads import (
    DEFAULT_ALLOW_HOSTS,
    DEFAULT_TEMPLATE,
    Downloader,
    DownloadSettings,
    check_file,
)
from klingmon.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from klingmon.cli._context import Context
    from klingmon.downloads import DownloadEvent
    from klingmon.store import DownloadRow, Store

__all__ = ["download_settings", "parse_span", "run_downloads"]

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
#: Files above this size get a bar of their own.
_BIG = 8 * 1024 * 1024
_BAD = ("failed", "refused", "expired")


def parse_span(text: str) -> float:
    """``3d``, ``12h``, ``90m``, ``30s`` or plain seconds, as seconds."""
    match = _SPAN.match(text)
    if match is None:
        raise ConfigError(f"not a time span: {text!r} (try 3d, 12h or 90m)")
    return float(match.group(1)) * _UNIT[match.group(2)]


def download_settings(
    *,
    out: str,
    template: str = DEFAULT_TEMPLATE,
    allow_hosts: list[str] | None = None,
    allow_origins: list[str] | None = None,
    max_bytes: int | None = None,
    max_in_flight: int | None = None,
    parallel: int = 4,
) -> DownloadSettings:
    hosts = tuple(allow_hosts) if allow_hosts else DEFAULT_ALLOW_HOSTS
    extra: dict[str, Any] = {} if max_bytes is None else {"max_bytes": max_bytes}
    return DownloadSettings(
        max_in_flight=max_in_flight,
        out=out,
        template=template,
        allow_hosts=hosts,
        allow_origins=tuple(allow_origins or ()),
        parallel=parallel,
        **extra,
    )


class _Bars:
    """A Rich progress display fed by the downloader's events."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.overall = progress.add_task("files", total=total)
        self.files: dict[int, TaskID] = {}

    def __call__(self, event: DownloadEvent) -> None:
        bar = self.files.get(event.download_id)
        if event.kind == "progress" and bar is None and (event.total or 0) >= _BIG:
            name = event.dest.rsplit("/", 1)[-1][-40:]
            bar = self.progress.add_task(name, total=event.total)
            self.files[event.download_id] = bar
        if bar is not None:
            self.progress.update(bar, completed=event.received, total=event.total)
        if event.kind in {"done", "failed"}:
            self.progress.advance(self.overall)
            if bar is not None:
                self.progress.remove_task(bar)
                del self.files[event.download_id]


def run_downloads(
    context: Context,
    settings: DownloadSettings,
    *,
    batch_id: int | None,
    within_s: float | None,
    live: bool,
) -> dict[str, int]:
    """Fetch everything owed (of one batch, or expiring soon); counts by status."""
    store = context.store()
    clock = SystemClock()
    store.downloads.ensure_downloads(to_ms(clock.now()), batch_id)
    owed = len(
        store.downloads.download_rows(batch_id, statuses=("pending", "downloading"))
    )
    owed += len(store.downloads.download_rows(batch_id, statuses=("failed", "refused")))
    downloader = Downloader(store, settings, clock=clock)

    async def go() -> dict[str, int]:
        try:
            return await downloader.run(batch_id=batch_id, expiring_within_s=within_s)
        finally:
            await downloader.aclose()
            store.fleet.release(downloader.owner)

    if live and context.console.is_terminal and owed:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=context.console,
        )
        bars = _Bars(progress, owed)
        downloader.on_event = bars
        with progress:
            counts: dict[str, int] = run_async(go())
    else:
        counts = run_async(go())
    return counts


def _batch_id(store: Store, ref: str | None) -> int | None:
    if ref is None:
        return None
    row = store.tasks.batch(ref)
    if row is None:
        raise NotFoundError(f"no batch {ref!r}")
    return row.id


def _row_json(row: DownloadRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "task": row.task_id,
        "kind": row.kind,
        "index": row.idx,
        "status": row.status,
        "dest": row.dest,
        "size": row.size,
        "sha256": row.sha256,
        "attempts": row.attempts,
        "error": row.last_error,
        "expires_ms": row.expires_ms,
    }


@app.command()
def download(
    ctx: typer.Context,
    batch: str | None = typer.Argument(None, help="Batch name or id (default: all)."),
    out: str | None = typer.Option(
        None,
        "--out",
        help="Folder (or fsspec URL) for this run; default: the global "
        "--download-dir (KLINGMON_DOWNLOAD_DIR, ./klingmon-downloads).",
        show_default=False,
    ),
    template: str = typer.Option(
        DEFAULT_TEMPLATE,
        "--template",
        envvar="KLINGMON_DOWNLOAD_TEMPLATE",
        help="File names: {batch} {index} {slug} {task_id} {external_task_id} "
        "{endpoint} {model} {mode} {video_id} {kind} {n} {ext}.",
    ),
    expiring: str | None = typer.Option(
        None, "--expiring", help="Only files Kling deletes within this span (3d, 12h)."
    ),
    allow_host: list[str] | None = typer.Option(
        None,
        "--allow-host",
        envvar="KLINGMON_DOWNLOAD_HOSTS",
        help="Hosts to fetch from over https (default: Kling's CDN).",
    ),
    allow_origin: list[str] | None = typer.Option(
        None,
        "--allow-origin",
        hidden=True,
        help="Deprecated: use the global --download-origin.",
    ),
    max_bytes: int | None = typer.Option(
        None,
        "--max-bytes",
        envvar="KLINGMON_DOWNLOAD_MAX_BYTES",
        help="Largest file taken, in bytes (default 2 GiB).",
    ),
    max_in_flight: int | None = typer.Option(
        None,
        "--max-in-flight",
        envvar="KLINGMON_DOWNLOAD_MAX_IN_FLIGHT",
        help="Bytes all parallel files may hold at once (default: --max-bytes).",
    ),
    parallel: int = typer.Option(4, "--parallel", help="Files fetched at once."),
    as_json: bool = typer.Option(False, "--json", help="Print the files as JSON."),
) -> None:
    """Download results (soonest to expire first); resumes, never fetches twice."""
    context = get_context(ctx)
    origins = list(context.settings.download_origins)
    if allow_origin:
        context.err.print(
            "warning: download --allow-origin is deprecated; use the global "
            "--download-origin (or KLINGMON_DOWNLOAD_ORIGINS)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        origins += allow_origin
    folder = out or context.settings.download_dir
    settings = download_settings(
        out=folder,
        template=template,
        allow_hosts=allow_host,
        allow_origins=origins,
        max_bytes=max_bytes,
        max_in_flight=max_in_flight,
        parallel=parallel,
    )
    within = None if expiring is None else parse_span(expiring)
    store = context.store()
    batch_id = _batch_id(store, batch)
    counts = run_downloads(
        context, settings, batch_id=batch_id, within_s=within, live=not as_json
    )
    rows = store.downloads.download_rows(batch_id)
    horizon = None if within is None else to_ms(SystemClock().now() + within)
    bad = [
        r
        for r in rows
        if r.status in _BAD
        or (
            r.status in {"pending", "downloading"}
            and (horizon is None or (r.expires_ms or 0) <= horizon)
        )
    ]
    if as_json:
        emit_json(
            {
                "out": settings.out,
                "counts": counts,
                "files": [_row_json(r) for r in rows],
            }
        )
    else:
        shown = {k: v for k, v in counts.items() if v and k != "expiring"}
        summary = ", ".join(f"{n} {k}" for k, n in sorted(shown.items())) or "nothing"
        context.console.print(
            f"Downloads: {summary}. {_where(settings, rows)}",
            soft_wrap=True,
            markup=False,
        )
        for row in bad:
            context.console.print(
                f"  {row.status}: task {row.task_id} {row.kind} {row.idx}: "
                f"{row.last_error or ''}",
                soft_wrap=True,
                markup=False,
            )
    if bad:
        raise typer.Exit(4)


def _where(settings: DownloadSettings, rows: list[DownloadRow]) -> str:
    """Where the files are: this run's folder, and any that landed elsewhere before."""
    out = settings.out
    root = out.rstrip("/") if settings.remote else _local_root(out)
    done = [r.dest for r in rows if r.status == "done" and r.dest]
    elsewhere = [d for d in done if not _under(d, root)]
    text = f"Files under {out}"
    if elsewhere:
        places = sorted({_parent(d) for d in elsewhere})
        more = f" and {len(places) - 1} more" if len(places) > 1 else ""
        text += (
            f"; {len(elsewhere)} downloaded before stay where they landed "
            f"({places[0]}{more})"
        )
    return text


def _local_root(out: str) -> str:
    return str(Path(out.removeprefix("file://")).expanduser().absolute())


def _under(dest: str, root: str) -> bool:
    return dest == root or dest.startswith(root.rstrip("/") + "/")


def _parent(dest: str) -> str:
    return dest.rsplit("/", 1)[0] if "/" in dest else dest


@app.command()
def verify(
    ctx: typer.Context,
    batch: str | None = typer.Argument(None, help="Batch name or id (default: all)."),
    requeue: bool = typer.Option(
        False, "--requeue", help="Owe missing or changed files again."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Re-hash downloaded files; flag the missing and the changed."""
    context = get_context(ctx)
    store = context.store()
    batch_id = _batch_id(store, batch)
    findings: list[tuple[DownloadRow, str]] = []
    for row in store.downloads.download_rows(batch_id, statuses=("done",)):
        dest = row.dest or ""
        remote = "://" in dest and not dest.startswith("file://")
        findings.append((row, check_file(dest, row.sha256, remote=remote)))
    bad = [row for row, state in findings if state != "ok"]
    if requeue:
        store.downloads.requeue_downloads([row.id for row in bad])
    if as_json:
        emit_json(
            {
                "checked": len(findings),
                "ok": len(findings) - len(bad),
                "files": [_row_json(r) | {"check": s} for r, s in findings],
            }
        )
    else:
        table = Table(title=f"Verified {len(findings)} files")
        table.add_column("check")
        table.add_column("file")
        for row, state in findings:
            if state != "ok":
                table.add_row(state, row.dest or "")
        if bad:
            context.console.print(table)
        context.console.print(
            f"{len(findings) - len(bad)} of {len(findings)} files intact"
            + (f"; {len(bad)} owed again" if requeue and bad else "")
        )
    if bad:
        raise typer.Exit(5)
