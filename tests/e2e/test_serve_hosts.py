"""``klingmon serve`` as run by a user: start lines, Host check, hook env, ps."""

from __future__ import annotations

import json
import re
import shlex
import signal
import sys
import time

import httpx
import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon, spawn, wait_listening
from typer.testing import CliRunner

from klingmon.cli import app
from klingmon.sim import SimConfig
from klingmon.store import NewTask, Store
from klingmon.testing import SimServer, free_port

TOKEN = "serve-token-e2e-0123456789"
WHSEC = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="


def _wait_for(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


@pytest.mark.timeout(60)
def test_serve_prints_its_urls_refuses_rebinding_and_keeps_hooks_clean(tmp_path):
    """Start lines name the three URLs; a rebound Host gets 400; no key in a hook."""
    env_file = tmp_path / "hook-env.json"
    dump = (
        f"import json,os; open({str(env_file)!r},'w')"
        ".write(json.dumps(dict(os.environ)))"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with SimServer(SimConfig(admin=True, seed=5, time_scale=300.0)) as server:
        env = cli_env(
            server,
            tmp_path / "serve.db",
            KLINGMON_API_TOKEN=TOKEN,
            KLINGMON_ALLOWED_HOSTS="km.example.com",
        )
        with Store.open(env["KLINGMON_DB"]) as store:  # one task for the hook
            task = NewTask(endpoint="/v1/videos/text2video", body={"prompt": "clip"})
            store.tasks.create_batch("s", [task], int(time.time() * 1000))
        proc = spawn(
            *FAST_FLAGS,
            "serve",
            "--port",
            str(port),
            "--public-url",
            base,
            "--hook-command",
            f"{shlex.quote(sys.executable)} -c {shlex.quote(dump)}",
            env=env,
        )
        try:
            wait_listening(port, proc)
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            rebound = httpx.get(
                f"{base}/api/tasks/1",
                headers=bearer | {"Host": f"rebind.attacker.example:{port}"},
            )
            named = httpx.get(
                f"{base}/api/tasks/1", headers=bearer | {"Host": "km.example.com"}
            )
            _wait_for(env_file.exists, timeout=30, what="the hook")
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert rebound.status_code == 400
    assert named.status_code == 200
    assert f"Dashboard:  {base}/" in err
    assert f"Callbacks:  {base}/callbacks/kling/<task token>" in err
    assert f"Metrics:    {base}/metrics (Bearer token)" in err
    assert "warning" not in err  # the token came from the environment
    assert TOKEN not in out + err
    hook_env = json.loads(env_file.read_text())
    secrets = (TOKEN, server.sim.config.secret_key, server.sim.config.access_key)
    assert not any(s in json.dumps(hook_env) for s in secrets)
    assert hook_env["KLINGMON_EVENT_KIND"] == "status"


@pytest.mark.timeout(30)
def test_secrets_given_as_flags_are_warned_about(tmp_path):
    """--token and the secrets on the command line each get one warning.

    A bad --forward-secret stops serve right after the warnings: no server needed.
    """
    with SimServer(SimConfig()) as server:
        env = cli_env(server, tmp_path / "w.db")
        done = klingmon(
            "serve",
            "--token",
            TOKEN,
            "--webhook-secret",
            WHSEC,
            "--forward-secret",
            "not-whsec",
            env=env,
        )
    err = done.stderr
    assert done.returncode == 2, err
    assert err.count("warning: --token on the command line") == 1
    assert err.count("warning: --webhook-secret on the command line") == 1
    assert err.count("warning: --forward-secret on the command line") == 1
    assert "set KLINGMON_API_TOKEN instead" in err
    assert TOKEN not in err
    assert WHSEC not in err


def test_serve_help_says_to_prefer_the_environment():
    """--help names the variables and why: a flag shows in ps."""
    shown = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    text = re.sub(r"[\s│]+", " ", shown.output)
    assert shown.exit_code == 0, shown.output
    assert "KLINGMON_API_TOKEN" in text
    assert "KLINGMON_WEBHOOK_SECRET" in text
    assert text.count("a flag shows in ps") == 4  # token, two secrets, --notify
    assert "KLINGMON_FORWARD_SECRET" in text
    assert "KLINGMON_NOTIFY" in text
    assert "--allowed-host" in text
    assert "KLINGMON_ALLOWED_HOSTS" in text
    assert "--hook-env" in text
