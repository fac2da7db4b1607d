"""``sim`` and ``demo``: the simulator on its own, and everything end to end."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Group
from rich.live import Live

from klingmon.api import VideoExtendRequest, resolve_endpoint
from klingmon.batchfile import read_batch_file
from klingmon.cli._app import app
from klingmon.cli._context import emit_json, get_context, invocation, run_async
from klingmon.cli._render import report_view
from klingmon.cli._watch import _view, batch_summary
from klingmon.config import Secret, Settings
from klingmon.errors import UsageError
from klingmon.hooks import HookEvent
from klingmon.policy import SchedulePolicy
from klingmon.runtime import build_runtime
from klingmon.sim import Faults, SimConfig, accounts_from_file
from klingmon.sim import run as run_sim

if TYPE_CHECKING:
    from collections.abc import Iterable

    from klingmon.cli._context import Context
    from klingmon.engine import Monitor
    from klingmon.store import TaskRow

__all__: list[str] = []


@app.command()
def sim(
    host: str = typer.Option(
        "127.0.0.1", "--host", envvar="KLINGMON_SIM_HOST", help="Address to listen on."
    ),
    port: int = typer.Option(
        8787, "--port", envvar="KLINGMON_SIM_PORT", help="Port to listen on."
    ),
    time_scale: float = typer.Option(
        1.0,
        "--time-scale",
        help="Kling seconds per real second (60: a minute a second).",
    ),
    slots: int = typer.Option(
        5, "--slots", help="Legacy: video slots per model_name (1303 beyond)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of durations and faults."),
    fail_rate: float = typer.Option(
        0.03, "--fail-rate", help="Share of tasks that end failed."
    ),
    stuck_rate: float = typer.Option(
        0.0, "--stuck-rate", help="Share of tasks that never finish."
    ),
    error_rate: float = typer.Option(0.0, "--error-rate", help="Share of 5xx answers."),
    rate_limit_rate: float = typer.Option(
        0.0, "--rate-limit-rate", help="Share of 1302s."
    ),
    drop_create_rate: float = typer.Option(
        0.0,
        "--drop-create-rate",
        help="Share of creates stored, then answered by a dropped connection.",
    ),
    access_key: str = typer.Option(
        "sim-access-key", "--access-key", help="Access key the simulator accepts."
    ),
    secret_key: str = typer.Option(
        "sim-secret-key", "--secret-key", help="Secret key the simulator accepts."
    ),
    api_key: str = typer.Option(
        "sim-api-key",
        "--api-key",
        help="API key the simulator accepts (the only credential of the new "
        "generation's paths).",
    ),
    webhook_secret: str | None = typer.Option(
        None,
        "--webhook-secret",
        envvar="KLINGMON_SIM_WEBHOOK_SECRET",
        help="whsec_ secret: callbacks are then Standard Webhooks signed.",
        show_default=False,
    ),
    webhook_secret_previous: str | None = typer.Option(
        None,
        "--webhook-secret-previous",
        envvar="KLINGMON_SIM_WEBHOOK_SECRET_PREVIOUS",
        help="A second whsec_ secret, as during Kling's 7-day rotation: callbacks "
        "then carry two v1, signatures.",
        show_default=False,
    ),
    new_models: list[str] | None = typer.Option(
        None,
        "--new-model",
        metavar="PATH",
        help="New-generation /<family>/<model> path to serve (repeat; default: "
        "Kling's current models).",
        show_default=False,
    ),
    retired: list[str] | None = typer.Option(
        None,
        "--retired",
        metavar="PATH|MODEL",
        help="A path or legacy model_name answered as retired (repeat; default: "
        "/v1/videos/multi-image2video).",
        show_default=False,
    ),
    video_slots: int = typer.Option(
        5, "--video-slots", help="New generation: video slots per model version."
    ),
    image_slots: int = typer.Option(
        10, "--image-slots", help="Image slots per model version, both generations."
    ),
    max_query_ids: int = typer.Option(
        50, "--max-query-ids", help="Most ids one GET /tasks takes."
    ),
    admin: bool = typer.Option(False, "--admin", help="Serve /admin/* counters."),
    accounts: Path | None = typer.Option(
        None,
        "--accounts",
        help=(
            "A TOML file of several accounts, [accounts.NAME] tables with their keys"
            " and slots; the other options apply to all."
        ),
        show_default=False,
    ),
) -> None:
    """Serve a local Kling API simulator (try pipelines without spending credits).

    Both API generations: legacy /v1/... paths (a JWT or the API key) and the new
    /<family>/<model> paths (the API key only), GET and POST /tasks, /account/costs.
    """
    if webhook_secret_previous and not webhook_secret:
        raise UsageError("--webhook-secret-previous needs --webhook-secret")
    generation: dict[str, Any] = {}
    if new_models:
        generation["new_models"] = frozenset(resolve_endpoint(p) for p in new_models)
    if retired:
        generation["retired"] = frozenset(
            resolve_endpoint(r) if r.startswith("/") else r for r in retired
        )
    try:
        config = SimConfig(
            seed=seed,
            time_scale=time_scale,
            slots=slots,
            access_key=access_key,
            secret_key=secret_key,
            api_key=api_key,
            webhook_secret=webhook_secret,
            webhook_secret_previous=webhook_secret_previous,
            video_slots=video_slots,
            image_slots=image_slots,
            max_query_ids=max_query_ids,
            admin=admin,
            **generation,
            faults=Faults(
                fail_rate=fail_rate,
                stuck_rate=stuck_rate,
                error_5xx_rate=error_rate,
                rate_limit_rate=rate_limit_rate,
                drop_create_rate=drop_create_rate,
            ),
        )
        several = accounts_from_file(accounts, config) if accounts else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    names = f", accounts {', '.join(several)}" if several else ""
    typer.echo(
        f"Kling simulator on http://{host}:{port} (time x{time_scale:g}{names})",
        err=True,
    )
    run_sim(config, host=host, port=port, accounts=several)


_EXTENDS = 4
#: The demo's Kling is fast: polls are close together, the safety net too.
_DEMO_SCHEDULE = SchedulePolicy(
    target_lag=0.5, min_interval=0.25, max_interval=3.0, safety_interval=10.0
)


def _demo_settings(config: SimConfig, url: str, db: Path, results: Path) -> Settings:
    """The simulator's account, the demo's store; results land in <out>/downloads
    (the simulator's origin is allowed over http; Kling's CDN would be https)."""
    return Settings(
        db=str(db),
        api_base=url,
        access_key=config.access_key,
        secret_key=Secret(config.secret_key),
        # the new generation's rows take the API key only (both keys are set:
        # legacy rows keep their JWT, as an account with both would)
        api_key=Secret(config.api_key) if config.api_key else None,
        slots=config.slots,
        download_dir=str(results),
        download_origins=(url,),
        target_lag=_DEMO_SCHEDULE.target_lag,
        min_interval=_DEMO_SCHEDULE.min_interval,
        max_interval=_DEMO_SCHEDULE.max_interval,
    )


@app.command()
def demo(
    ctx: typer.Context,
    out: Path = typer.Option(
        Path("klingmon-demo"), "--out", help="Folder for the demo's store."
    ),
    time_scale: float = typer.Option(
        40.0, "--time-scale", help="Kling seconds per real second."
    ),
    seed: int = typer.Option(7, "--seed", help="The simulator's seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Simulator + engine + a sample batch over both API generations, end to end.

    Legacy text2video and image2video, new-generation text-to-video/kling-3.0,
    omni-video/kling-3.0-omni and an image task of three images; four finished
    clips are extended with video-extend from an on_succeed hook.
    """
    from klingmon.testing import SimServer  # noqa: PLC0415 - only the demo needs it

    context = get_context(ctx)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "demo.db"
    results = out / "downloads"
    for leftover in (db, db.with_name("demo.db-wal"), db.with_name("demo.db-shm")):
        leftover.unlink(missing_ok=True)
    config = SimConfig(
        seed=seed,
        time_scale=time_scale,
        slots=5,
        admin=True,
        faults=Faults(fail_rate=0.05),
    )
    sample = resources.files("klingmon.cli").joinpath("demo_batch.jsonl")
    with resources.as_file(sample) as path:
        rows = read_batch_file(path)
    with (
        SimServer(config) as server,
        build_runtime(
            _demo_settings(config, server.url, db, results),
            engine={"schedule": _DEMO_SCHEDULE},
        ) as runtime,
    ):
        store = runtime.store
        monitor = runtime.monitor(runtime.client())
        main = monitor.submit((r.request for r in rows), batch="demo")
        extended: list[int] = []

        @monitor.on_succeed
        def extend(event: HookEvent) -> None:
            # Hooks run from the outbox: a finished clip is extended by 5 seconds.
            task = event.task
            videos = (task.result or {}).get("videos") or []
            if (
                task.batch_id != main.id
                or not task.endpoint.endswith("text2video")
                or len(extended) >= _EXTENDS
                or not videos
            ):
                return
            extended.append(task.id)
            request = VideoExtendRequest(
                video_id=str(videos[0]["id"]), prompt="The camera keeps moving forward"
            )
            monitor.submit([request], batch=f"demo-extend-{len(extended)}")

        run_async(_run(context, monitor, live=not as_json), stop=monitor.stop)
        summaries = [batch_summary(monitor, b) for b in store.tasks.batches()]
        endpoints = _by_endpoint(store.tasks.tasks(main.id))
        report = store.reports.report(main.id)
        files = store.downloads.download_counts()
        counters = server.sim.counters()
    if as_json:
        record: dict[str, Any] = dataclasses.asdict(report)
        record["by_status"] = {s.value: n for s, n in report.by_status.items() if n}
        emit_json(
            {
                "batches": summaries,
                "report": record,
                "store": str(db),
                "endpoints": endpoints,
                "downloads": {"dir": str(results), "files": files},
            }
        )
    else:
        context.console.print(report_view("demo", report))
        context.console.print(
            f"Simulator: {sum(counters['creates_per_external_id'].values())} creates, "
            f"max {counters['max_in_flight']} in flight of {config.slots} slots."
        )
        context.console.print(
            f"Store: {db}  (try: {invocation()} status --db {db})",
            soft_wrap=True,
            markup=False,
        )
        context.console.print(
            f"Results: {files.get('done', 0)} files in {results}/<batch>/",
            soft_wrap=True,
            markup=False,
        )
    unfinished = [s for s in summaries if not s["done"]]
    if unfinished:
        raise typer.Exit(130)


def _by_endpoint(tasks: Iterable[TaskRow]) -> dict[str, dict[str, int]]:
    """The sample batch counted by endpoint and status (both generations)."""
    counts: dict[str, dict[str, int]] = {}
    for task in tasks:
        by_status = counts.setdefault(task.endpoint, {})
        by_status[task.status.value] = by_status.get(task.status.value, 0) + 1
    return counts


async def _run(context: Context, monitor: Monitor, *, live: bool) -> None:
    runner = asyncio.create_task(monitor.run(), name="klingmon-demo-engine")
    try:
        if live and context.console.is_terminal:
            with Live(console=context.console, refresh_per_second=4) as display:
                while not runner.done():
                    display.update(_all(monitor))
                    await asyncio.wait({runner}, timeout=0.25)
                display.update(_all(monitor))
        await runner
        if live and not context.console.is_terminal:
            context.console.print(_all(monitor))
    finally:
        with contextlib.suppress(Exception):
            await monitor.close_clients()


def _all(monitor: Monitor) -> Group:
    return Group(*(_view(monitor, b) for b in monitor.store.tasks.batches()))
