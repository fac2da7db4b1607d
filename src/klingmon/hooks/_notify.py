"""Hooks beyond Python: a shell command, signed outgoing webhooks, Apprise.

Each factory returns an async callable to register as a :class:`Hooks` entry. They
run from the outbox, at least once; every delivery carries the event's
``idempotency_key`` (the shell command gets it in ``KLINGMON_IDEMPOTENCY_KEY``, the
webhook as its ``webhook-id``) so receivers can drop repeats. A failure raises, and
the outbox retries the event later with backoff.

The shell command gets a clean environment, not ours: no Kling key, webhook secret
or API token reaches it unless named with ``--hook-env``. What it writes to stderr
is withheld from errors and logs (both end up shared); the error says only the exit
code and how many bytes it wrote, so a hook that needs them redirects its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import warnings
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from standardwebhooks.webhooks import Webhook

from klingmon._clock import Clock, SystemClock
from klingmon.domain import TERMINAL, TaskStatus
from klingmon.errors import ConfigError, HookError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from klingmon.hooks._hooks import HookEvent, HookName, Hooks
    from klingmon.store import Store

__all__ = [
    "apprise_hook",
    "check_env_names",
    "command_hook",
    "event_json",
    "hook_environment",
    "install_hooks",
    "webhook_hook",
]

logger = logging.getLogger(__name__)

_ALL: tuple[HookName, ...] = ("on_status", "on_stuck", "on_timeout")
#: What every hook command's environment holds from ours: enough to find programs,
#: a home, a locale and a temporary folder, never a credential.
_BASE_ENV = frozenset({"PATH", "HOME", "LANG", "TMPDIR", "TZ"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def hook_environment(
    item: HookEvent,
    allowed: Sequence[str] = (),
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The hook command's environment: the base names, ``allowed``, the event's."""
    source = os.environ if source is None else source
    keep = _BASE_ENV | set(allowed)
    env = {k: v for k, v in source.items() if k in keep or k.startswith("LC_")}
    event = item.event
    env["KLINGMON_IDEMPOTENCY_KEY"] = item.idempotency_key
    env["KLINGMON_EVENT_ID"] = str(event.id)
    env["KLINGMON_EVENT_KIND"] = event.kind
    env["KLINGMON_EVENT_STATUS"] = (
        "" if event.new_status is None else event.new_status.value
    )
    return env


def check_env_names(names: Sequence[str]) -> tuple[str, ...]:
    """``--hook-env`` names, refused when one is not a variable name."""
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(
                f"--hook-env {name!r}: give a variable name (its value is read"
                " from the environment, never the command line)"
            )
    return tuple(names)


def event_json(item: HookEvent) -> dict[str, Any]:
    """What every outgoing hook receives: the event and a summary of the task."""
    event, task = item.event, item.task
    return {
        "idempotency_key": item.idempotency_key,
        "event": {
            "id": event.id,
            "at_ms": event.at_ms,
            "source": event.source,
            "kind": event.kind,
            "old_status": None if event.old_status is None else event.old_status.value,
            "new_status": None if event.new_status is None else event.new_status.value,
        },
        "task": {
            "id": task.id,
            "batch_id": task.batch_id,
            "endpoint": task.endpoint,
            "external_task_id": task.external_task_id,
            "task_id": task.task_id,
            "status": task.status.value,
            "status_msg": task.status_msg,
            "prompt": task.prompt,
            "result": task.result,
            "stuck": task.stuck,
            "watch_timeout": task.watch_timeout,
        },
    }


def command_hook(
    command: str, *, timeout: float = 60.0, env: Sequence[str] = ()
) -> Callable[[HookEvent], Awaitable[None]]:
    """Run ``command`` in a shell with the event as JSON on stdin; non-zero = retry.

    ``env`` names the variables of ours it may see besides :data:`_BASE_ENV`.
    """
    allowed = check_env_names(env)

    async def run(item: HookEvent) -> None:
        data = json.dumps(event_json(item)).encode()
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=hook_environment(item, allowed),
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(data), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise HookError(f"hook command timed out after {timeout:g} s") from None
        if proc.returncode != 0:
            withheld = f"; its stderr ({len(err)} bytes) was withheld" if err else ""
            raise HookError(f"hook command exited {proc.returncode}{withheld}")

    return run


def _sign(secret: str, msg_id: str, stamp: int, body: bytes) -> str:
    when = datetime.fromtimestamp(stamp, UTC)
    return Webhook(secret).sign(msg_id, when, body.decode())


def webhook_hook(
    url: str,
    *,
    secret: str | None = None,
    client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    timeout: float = 10.0,
) -> Callable[[HookEvent], Awaitable[None]]:
    """POST the event to ``url``, signed with Standard Webhooks when ``secret`` is set.

    ``webhook-id`` is the event's idempotency key, the same on every retry.
    """
    clock = clock or SystemClock()

    async def post(item: HookEvent) -> None:
        body = json.dumps(event_json(item), separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "webhook-id": item.idempotency_key,
        }
        if secret is not None:
            stamp = int(clock.now())
            headers["webhook-timestamp"] = str(stamp)
            headers["webhook-signature"] = _sign(
                secret, item.idempotency_key, stamp, body
            )
        try:
            if client is not None:
                response = await client.post(url, content=body, headers=headers)
            else:
                async with httpx.AsyncClient(timeout=timeout) as own:
                    response = await own.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise HookError(f"webhook delivery failed: {type(exc).__name__}") from exc
        if not response.is_success:
            raise HookError(f"webhook answered {response.status_code}")

    return post


def _load_apprise(urls: Sequence[str]) -> Any:
    # Apprise loads modules Python deprecates (imghdr) while it parses URLs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import apprise  # noqa: PLC0415 - optional extra
        except ImportError as exc:
            raise ConfigError(
                "notifications need Apprise: pip install 'klingmon[notify]'"
            ) from exc
        notifier = apprise.Apprise()
        for url in urls:
            if not notifier.add(url):
                raise ConfigError("an Apprise notification URL was not understood")
    return notifier


def apprise_hook(
    urls: Sequence[str], store: Store
) -> Callable[[HookEvent], Awaitable[None]]:
    """Notify through Apprise when a task failed or is stuck, or a batch is done."""
    notifier = _load_apprise(urls)

    def message(item: HookEvent) -> tuple[str, str] | None:
        event, task = item.event, item.task
        label = task.task_id or task.external_task_id
        if event.kind == "stuck":
            return "klingmon: task stuck", f"Task {label} is stuck ({task.status})."
        if event.kind in {"status", "rejected"} and event.new_status in {
            TaskStatus.FAILED,
            TaskStatus.REJECTED,
        }:
            why = task.status_msg or "no message"
            return "klingmon: task failed", f"Task {label} {event.new_status}: {why}"
        return None

    def batch_done(item: HookEvent) -> tuple[str, str] | None:
        event = item.event
        if event.kind not in {"status", "rejected"} or event.new_status not in (
            TERMINAL
        ):
            return None
        counts = store.tasks.count_by_status(event.batch_id)
        if any(n for status, n in counts.items() if status not in TERMINAL):
            return None
        key = f"notified.batch_done:{event.batch_id}"
        if store.meta.setdefault(key, str(event.id)) != str(event.id):
            return None  # another event of the batch already announced it
        batch = store.tasks.batch(event.batch_id)
        name = batch.name if batch else str(event.batch_id)
        ok = counts.get(TaskStatus.SUCCEED, 0)
        return (
            "klingmon: batch done",
            f"Batch {name} done: {ok}/{sum(counts.values())} succeeded.",
        )

    async def notify(item: HookEvent) -> None:
        for found in (message(item), await asyncio.to_thread(batch_done, item)):
            if found is None:
                continue
            title, body = found
            sent = await asyncio.to_thread(notifier.notify, title=title, body=body)
            if not sent:
                raise HookError("Apprise could not deliver a notification")

    return notify


def install_hooks(
    hooks: Hooks,
    *,
    store: Store,
    command: str | None = None,
    forward_url: str | None = None,
    forward_secret: str | None = None,
    notify: Sequence[str] = (),
    clock: Clock | None = None,
    hook_env: Sequence[str] = (),
) -> None:
    """Register the configured outgoing hooks for every event kind hooks hear of.

    ``hook_env`` names the variables the command may see (see :func:`command_hook`).
    """
    made = []
    if command:
        made.append(command_hook(command, env=hook_env))
    if forward_url:
        made.append(webhook_hook(forward_url, secret=forward_secret, clock=clock))
    if notify:
        made.append(apprise_hook(notify, store))
    for hook in made:
        for name in _ALL:
            hooks.add(name, hook)
