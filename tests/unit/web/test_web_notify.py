"""Outgoing hooks: shell command, signed webhook, Apprise; each carries the event id."""

from __future__ import annotations

import json
import shlex
import sys
from typing import TYPE_CHECKING

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from web_support import fresh_clock, tracked_store

from klingmon._clock import to_ms
from klingmon.api import Task, snapshot
from klingmon.errors import ConfigError
from klingmon.hooks import HookEvent, Hooks
from klingmon.hooks._notify import (
    HookError,
    command_hook,
    install_hooks,
    webhook_hook,
)
from klingmon.store import Observation
from klingmon.web import verify_signature

if TYPE_CHECKING:
    from starlette.requests import Request

WHSEC = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="


@pytest.fixture
def clock():
    return fresh_clock()


@pytest.fixture
def store(tmp_path, clock):
    with tracked_store(tmp_path, clock, n=1) as s:
        yield s


def _finish(store, clock, status: str = "failed") -> HookEvent:
    row = store.tasks.task("km-0")
    task = Task(
        task_id="kt-0",
        task_status=status,
        task_status_msg="content moderation",
        updated_at=to_ms(clock.now()),
        task_info={"external_task_id": "km-0"},
    )
    (change,) = store.watch.apply(
        [Observation(row.id, snapshot(task), "poll", 0)], to_ms(clock.now())
    )
    event = next(
        e for e in store.outbox.events(task_id=row.id) if e.id == change.event_id
    )
    return HookEvent(event, store.tasks.task(row.id))


async def test_command_hook_gets_the_event_on_stdin(store, clock, tmp_path):
    """The command reads the event JSON on stdin and sees the idempotency key."""
    out = tmp_path / "out.json"
    script = (
        "import json,os,sys; d=json.load(sys.stdin); "
        "d['env']=os.environ['KLINGMON_IDEMPOTENCY_KEY']; "
        f"open({str(out)!r},'w').write(json.dumps(d))"
    )
    hook = command_hook(f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}")
    item = _finish(store, clock)
    await hook(item)
    got = json.loads(out.read_text())
    assert got["idempotency_key"] == got["env"] == item.idempotency_key
    assert got["task"]["status"] == "failed"


async def test_failing_command_raises_for_a_retry(store, clock):
    """A non-zero exit raises, so the outbox tries again later."""
    with pytest.raises(HookError, match="exited 3"):
        await command_hook("exit 3")(_finish(store, clock))


def _receiver(seen: list[httpx.Request | Request], status: int = 200) -> Starlette:
    async def take(request: Request) -> Response:
        request.state.body = await request.body()
        seen.append(request)
        return Response(status_code=status)

    return Starlette(routes=[Route("/hook", take, methods=["POST"])])


async def test_webhook_hook_signs_with_standard_webhooks(store, clock):
    """Forwarded events verify with the shared secret; webhook-id is the event key."""
    seen: list[Request] = []
    transport = httpx.ASGITransport(app=_receiver(seen))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        item = _finish(store, clock)
        await webhook_hook("http://t/hook", secret=WHSEC, client=http, clock=clock)(
            item
        )
    (request,) = seen
    headers = dict(request.headers.items())
    found = verify_signature(WHSEC, headers, request.state.body, now=clock.now())
    assert found.webhook_id == item.idempotency_key


async def test_webhook_hook_raises_on_an_error_answer(store, clock):
    """A 5xx from the target raises, so the delivery is retried."""
    transport = httpx.ASGITransport(app=_receiver([], status=503))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with pytest.raises(HookError, match="503"):
            await webhook_hook("http://t/hook", client=http)(_finish(store, clock))


def test_bad_apprise_url_is_a_config_error(store):
    """An Apprise URL it cannot parse fails at start, with a clear message."""
    with pytest.raises(ConfigError, match="Apprise"):
        install_hooks(Hooks(), store=store, notify=["nonsense-scheme://x"])


def test_install_hooks_registers_for_every_kind(store):
    """A configured command runs for status, stuck and timeout events."""
    hooks = Hooks()
    install_hooks(hooks, store=store, command="true")
    assert {k for k, v in hooks.registry.items() if v} == {
        "on_status",
        "on_stuck",
        "on_timeout",
    }
