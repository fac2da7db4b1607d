"""Hook commands run in a clean environment, and their stderr stays private."""

from __future__ import annotations

import json
import shlex
import sys

import pytest
from test_web_notify import _finish
from web_support import fresh_clock, tracked_store

from klingmon.errors import ConfigError
from klingmon.hooks import Hooks
from klingmon.hooks._notify import HookError, command_hook, install_hooks

SECRETS = {
    "KLING_SECRET_KEY": "sk-hook-leak-1",
    "KLING_API_KEY": "ak-hook-leak-2",
    "KLINGMON_WEBHOOK_SECRET": "whsec_hookleak3",
    "KLINGMON_API_TOKEN": "tok-hook-leak-4",
    "AWS_SECRET_ACCESS_KEY": "aws-hook-leak-5",
}


@pytest.fixture
def clock():
    return fresh_clock()


@pytest.fixture
def store(tmp_path, clock):
    with tracked_store(tmp_path, clock, n=1) as s:
        yield s


def _dump_env(out) -> str:
    script = (
        f"import json,os; open({str(out)!r},'w').write(json.dumps(dict(os.environ)))"
    )
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"


async def test_no_credential_reaches_the_hook(store, clock, tmp_path, monkeypatch):
    """Kling keys, the webhook secret and the API token are not in its environment."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("MY_HOOK_TARGET", "s3://bucket")
    out = tmp_path / "env.json"
    item = _finish(store, clock)
    await command_hook(_dump_env(out), env=["MY_HOOK_TARGET"])(item)
    env = json.loads(out.read_text())
    assert not set(SECRETS) & set(env)
    assert not any(v in json.dumps(env) for v in SECRETS.values())
    assert env["MY_HOOK_TARGET"] == "s3://bucket"
    assert env["LC_ALL"] == "C.UTF-8"
    assert "PATH" in env
    assert env["KLINGMON_EVENT_KIND"] == "status"
    assert env["KLINGMON_EVENT_STATUS"] == "failed"
    assert env["KLINGMON_EVENT_ID"] == str(item.event.id)
    assert env["KLINGMON_IDEMPOTENCY_KEY"] == item.idempotency_key


async def test_stderr_is_withheld_from_the_error(store, clock):
    """The error names the exit code and the stderr size, never its text."""
    hook = command_hook("echo 'token=tok-hook-leak-4' >&2; exit 5")
    with pytest.raises(HookError) as caught:
        await hook(_finish(store, clock))
    message = str(caught.value)
    assert "exited 5" in message
    assert "withheld" in message
    assert "tok-hook-leak-4" not in message


def test_a_hook_env_entry_must_be_a_name(store):
    """``--hook-env NAME=value`` would put a value in ps: refused at start."""
    with pytest.raises(ConfigError, match="--hook-env 'TOKEN=abc'"):
        install_hooks(Hooks(), store=store, command="true", hook_env=["TOKEN=abc"])
