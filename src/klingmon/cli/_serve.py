"""``klingmon serve``: dashboard, callback receiver, JSON API, metrics (+ engine)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from urllib.parse import urlsplit, urlunsplit

import httpx
import typer
import uvicorn

from klingmon.cli._app import app
from klingmon.cli._context import Context, get_context, run_async
from klingmon.cli._hook_options import (
    ForwardSecret,
    ForwardUrl,
    HookCommand,
    HookEnv,
    Notify,
)
from klingmon.config import Secret
from klingmon.engine import EngineThread
from klingmon.errors import ConfigError
from klingmon.hooks import install_hooks
from klingmon.store import checkpoints

__all__ = ["serve_app"]

logger = logging.getLogger(__name__)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    public_url: str | None = typer.Option(
        None,
        "--public-url",
        envvar="KLINGMON_PUBLIC_URL",
        help="Base URL Kling can reach; submissions then carry a callback_url.",
    ),
    no_engine: bool = typer.Option(
        False, "--no-engine", help="Only receive; an engine runs elsewhere."
    ),
    webhook_secret: str | None = typer.Option(
        None,
        "--webhook-secret",
        envvar="KLINGMON_WEBHOOK_SECRET",
        help=(
            "Kling's whsec_ secret (several, space-separated, during a rotation):"
            " callbacks must be Standard Webhooks signed."
            " Prefer the environment variable: a flag shows in ps."
        ),
        show_default=False,
    ),
    allowed_host: list[str] | None = typer.Option(
        None,
        "--allowed-host",
        envvar="KLINGMON_ALLOWED_HOSTS",
        help=(
            "A Host name this server answers to besides loopback and the"
            " --public-url host (repeat; *.example.com for subdomains). Other"
            " Host headers get 400, so DNS rebinding cannot read the dashboard."
        ),
        show_default=False,
    ),
    confirm: bool = typer.Option(
        True,
        "--confirm/--no-confirm",
        help="Confirm a terminal status from an unsigned callback with a GET.",
    ),
    hook_command: HookCommand = None,
    hook_env: HookEnv = None,
    forward_url: ForwardUrl = None,
    forward_secret: ForwardSecret = None,
    notify: Notify = None,
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="KLINGMON_API_TOKEN",
        help=(
            "Token for the dashboard (enables its actions), the JSON API and"
            " /metrics (required off loopback). Prefer the environment"
            " variable: a flag shows in ps."
        ),
        show_default=False,
    ),
) -> None:
    """Serve the dashboard, callbacks, JSON API and /metrics; run the engine too."""
    context = get_context(ctx)
    if not _loopback(host) and not token:
        raise ConfigError(f"refusing to listen on {host} without --token")
    _warn_on_command_line(
        ctx,
        {
            "token": "KLINGMON_API_TOKEN",
            "webhook_secret": "KLINGMON_WEBHOOK_SECRET",
            "forward_secret": "KLINGMON_FORWARD_SECRET",
        },
    )
    changes: dict[str, object] = {}
    if public_url:
        changes["public_url"] = public_url
    if webhook_secret:
        changes["webhook_secret"] = Secret(webhook_secret)
    if allowed_host:
        changes["allowed_hosts"] = tuple(allowed_host)
    if changes:
        context.settings = dataclasses.replace(context.settings, **changes)  # type: ignore[arg-type]
    if forward_secret and not forward_secret.startswith("whsec_"):
        raise ConfigError("--forward-secret must start with whsec_")
    options = _Options(
        host=host,
        port=port,
        engine=not no_engine,
        confirm=confirm,
        hook_command=hook_command,
        hook_env=tuple(hook_env or ()),
        forward_url=forward_url,
        forward_secret=forward_secret,
        notify=tuple(notify or ()),
        token=token,
    )
    holder: dict[str, object] = {}

    def stop() -> None:
        dashboard = holder.get("dashboard")
        if dashboard is not None:
            dashboard.close()  # type: ignore[attr-defined]  # open event streams end
        server = holder.get("server")
        if isinstance(server, uvicorn.Server):
            server.should_exit = True

    run_async(serve_app(context, options, holder), stop=stop)


def _warn_on_command_line(ctx: typer.Context, names: dict[str, str]) -> None:
    """One line when a secret came as a flag, which every local user sees in ps."""
    for name, env in names.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "COMMANDLINE":
            flag = "--" + name.replace("_", "-")
            typer.echo(
                f"warning: {flag} on the command line is visible to other users"
                f" (ps); set {env} instead",
                err=True,
            )


def _hosts(
    settings_hosts: tuple[str, ...], public_url: str | None, host: str
) -> list[str]:
    """The Host names to answer to besides loopback: configured, public, bound."""
    from klingmon.web import url_host  # noqa: PLC0415 - FastAPI only for this command

    names = list(settings_hosts)
    if public_url and (public := url_host(public_url)):
        names.append(public)
    if host not in {"0.0.0.0", "::", ""}:  # noqa: S104 - compared, not bound
        names.append(host)
    return names


def _base(host: str, port: int) -> str:
    """A URL for the bound address (a wildcard is reached through loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def start_lines(options: _Options, public_url: str | None) -> list[str]:
    """What ``serve`` prints once it listens: where to look, never a secret."""
    base = _base(options.host, options.port)
    callbacks = (
        _without_userinfo(public_url).rstrip("/") + "/callbacks/kling/<task token>"
        if public_url
        else "none (no --public-url: Kling cannot reach this server; tasks are polled)"
    )
    guarded = " (Bearer token)" if options.token else ""
    lines = [
        f"Dashboard:  {base}/",
        f"Callbacks:  {callbacks}",
        f"Metrics:    {base}/metrics{guarded}",
    ]
    if not _loopback(options.host):
        lines.append(
            "Hosts:      loopback names, the public URL's host and --allowed-host"
            " only; any other Host header gets 400"
        )
    return lines


@dataclasses.dataclass(frozen=True, slots=True)
class _Options:
    host: str
    port: int
    engine: bool
    confirm: bool
    hook_command: str | None
    hook_env: tuple[str, ...]
    forward_url: str | None
    forward_secret: str | None
    notify: tuple[str, ...]
    token: str | None

    def __repr__(self) -> str:
        return f"_Options(host={self.host!r}, port={self.port}, engine={self.engine})"


async def serve_app(
    context: Context, options: _Options, holder: dict[str, object]
) -> None:
    """Run uvicorn, and (unless told not to) the engine on a loop of its own."""
    from klingmon.web import (  # noqa: PLC0415 - FastAPI only for this command
        Dashboard,
        MeteredTransport,
        Metrics,
    )

    runtime = context.runtime()
    settings = runtime.settings
    store = runtime.store
    metrics = Metrics(store, account=runtime.account)
    engine: EngineThread | None = None
    if options.engine:
        monitor = runtime.engine_monitor(
            transport=MeteredTransport(metrics, httpx.AsyncHTTPTransport()),
            confirm=options.confirm,
        )
        # Its own loop in a thread: its CPU work never holds a callback's answer;
        # the clients are closed on that loop, the only one that used them.
        engine = EngineThread(
            monitor, client=monitor.client, on_exit=lambda: _exit(holder)
        )
        install_hooks(
            monitor.hooks,
            store=store,
            command=options.hook_command,
            hook_env=options.hook_env,
            forward_url=options.forward_url,
            forward_secret=options.forward_secret,
            notify=options.notify,
        )
    elif options.hook_command or options.forward_url or options.notify:
        raise ConfigError("hooks run in the engine: drop --no-engine or run a worker")
    dashboard = Dashboard(
        token=options.token,
        download_dir=settings.download_dir,
        downloads=settings.downloads,
        slots=settings.slots,
        wake=engine.wake if engine is not None else None,
    )
    holder["dashboard"] = dashboard
    app = runtime.web_app(
        settings=runtime.receiver_settings(confirm=options.confirm),
        api_token=options.token,
        metrics=metrics,
        dashboard=dashboard,
        allowed_hosts=_hosts(settings.allowed_hosts, settings.public_url, options.host),
    )
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        # Bounds on hostile clients; create_app's Limits cap body size and time.
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,
        limit_concurrency=512,
    )
    server = uvicorn.Server(config)
    holder["server"] = server
    if engine is not None:
        engine.start()
    logger.info(
        "serve.start",
        extra={"host": options.host, "port": options.port, "engine": options.engine},
    )
    announce = asyncio.create_task(
        _announce(server, start_lines(options, settings.public_url)),
        name="klingmon-announce",
    )
    checkpointer = checkpoints(runtime.store)
    checkpointer.start()
    try:
        await server.serve()
    finally:
        announce.cancel()
        try:
            if engine is not None:
                engine.stop()
                await engine.join()
        finally:
            checkpointer.stop()


def _exit(holder: dict[str, object]) -> None:
    """The engine stopped (or failed): the server goes too."""
    server = holder.get("server")
    if isinstance(server, uvicorn.Server):
        server.should_exit = True


async def _announce(server: uvicorn.Server, lines: list[str]) -> None:
    """Print ``lines`` once the server listens (not if it fails to start)."""
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    for line in lines:
        typer.echo(line, err=True)
