"""Secrets never leave: a full run's every output is scanned for them.

Guards the redaction everywhere a secret could leak: log records (JSON, debug),
CLI output, exports, download sidecars, the store file, the dashboard's pages,
the JSON API, ``/metrics``, reprs and error messages. The secrets are distinctive
(random hex), so any copy of one is found, as is any JWT the client minted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
from typing import TYPE_CHECKING

import httpx
import jwt
import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon

from klingmon.api import AsyncKlingClient, JwtAuth, KlingClient, RetryPolicy
from klingmon.callback_tokens import SECRET_META_KEY
from klingmon.config import Secret, Settings
from klingmon.errors import KlingmonError, StoreError
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer, VirtualClock
from klingmon.web import Dashboard, ReceiverSettings, create_app, server_secret

if TYPE_CHECKING:
    from pathlib import Path

JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}")
SECRET_KEY = "s3cr3t-" + secrets.token_hex(20)
ACCESS_KEY = "ak-" + secrets.token_hex(8)
WHSEC = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
API_TOKEN = "tok-" + secrets.token_hex(20)


def _leaks(blob: bytes, needles: list[str], raw: bytes = b"") -> list[str]:
    """Which secrets (or a JWT, or the ``raw`` key bytes) occur in ``blob``."""
    found = [n[:10] + "..." for n in needles if n.encode() in blob]
    if raw and raw in blob:
        found.append("raw callback key")
    found += [f"JWT {m[:12]!r}..." for m in JWT.findall(blob)]
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Everything a full CLI run and its web app emitted, by source."""
    tmp = tmp_path_factory.mktemp("secrets")
    config = SimConfig(
        admin=True,
        seed=9,
        time_scale=2000.0,
        slots=10,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        api_key=None,
        faults=Faults(fail_rate=0.2),
    )
    out: dict[str, bytes] = {}
    with SimServer(config) as server:
        db = tmp / "k.db"
        env = cli_env(server, db, KLINGMON_WEBHOOK_SECRET=WHSEC)
        prompts = tmp / "p.txt"
        prompts.write_text("".join(f"scene {i}\n" for i in range(6)))
        base = ("-vv", "--log-format", "json")
        commands = {
            "submit": (*base, *FAST_FLAGS, "submit", str(prompts), "-b", "sb"),
            "submit-watch": ("--watch", "--json"),
            "status": (*base, "status", "--json"),
            "report": (*base, "report", "sb", "--json"),
            "stuck": (*base, "stuck", "--json"),
            "csv": (*base, "export", "sb", "-f", "csv"),
            "json": (*base, "export", "sb", "-f", "json"),
        }
        watch = commands.pop("submit-watch")
        commands["submit"] = (*commands["submit"], *watch)
        for name, args in commands.items():
            done = klingmon(*args, env=env)
            assert done.returncode in (0, 5), (name, done.stderr[-2000:])
            out[name] = (done.stdout + done.stderr).encode()
        assert b'"levelname"' in out["submit"] or b'"level"' in out["submit"]
        exported = json.loads(
            klingmon("export", "sb", "-f", "json", env=env).stdout or "[]"
        )
        assert len(exported) == 6
        task_id = next(r["task_id"] for r in exported if r.get("task_id"))
        shown = klingmon(*base, "show", task_id, "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        out["show"] = (shown.stdout + shown.stderr).encode()
        sidecars = sorted((tmp / "downloads").rglob("*.mp4.json"))
        assert sidecars, "no download sidecars"
        for path in sidecars:
            out[f"sidecar {path.name}"] = path.read_bytes()
        out.update(_web(db, task_id))
        for path in sorted(tmp.glob("k.db*")):
            out[f"store {path.name}"] = path.read_bytes()
    return out


def _web(db: Path, task_id: str) -> dict[str, bytes]:
    """The dashboard pages and the JSON API over the run's store, token given."""

    out: dict[str, bytes] = {}
    with Store.open(str(db)) as store:
        callback_secret = server_secret(store)
        stored = store.meta.get(SECRET_META_KEY)
        assert stored is not None
        assert bytes.fromhex(stored) == callback_secret
        out["callback_secret"] = stored.encode()  # a needle, not scanned
        app = create_app(
            store,
            secret=callback_secret,
            settings=ReceiverSettings(webhook_secret=WHSEC),
            api_token=API_TOKEN,
            dashboard=Dashboard(token=API_TOKEN, download_dir=str(db.parent)),
        )
        paths = [
            "/",
            "/batches/sb",
            f"/tasks/{task_id}",
            "/api/batches",
            "/api/batches/sb",
            "/api/batches/sb/tasks",
            f"/api/tasks/{task_id}",
            f"/api/tasks/{task_id}/events",
            "/metrics",
            "/healthz",
            "/readyz",
            "/login",
        ]

        async def fetch() -> None:
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {API_TOKEN}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers=headers
            ) as client:
                for path in paths:
                    response = await client.get(path)
                    assert response.status_code == 200, (path, response.status_code)
                    blob = repr(dict(response.headers)).encode() + response.content
                    out[f"GET {path}"] = blob
                login = await client.post(
                    "/login",
                    data={"token": API_TOKEN},
                    headers={"Origin": "http://localhost"},
                )
                out["POST /login"] = repr(dict(login.headers)).encode() + login.content

        asyncio.run(fetch())
    return out


def test_a_full_run_never_shows_a_secret(run: dict[str, bytes]):
    """CLI output, logs, exports, sidecars, pages and API hold no secret or JWT."""
    callback_secret = run["callback_secret"].decode()
    raw = bytes.fromhex(callback_secret)
    needles = [SECRET_KEY, WHSEC, WHSEC.removeprefix("whsec_"), API_TOKEN]
    leaks = {
        source: found
        for source, blob in run.items()
        if source != "callback_secret"
        and not source.startswith("store ")
        and (found := _leaks(blob, [*needles, callback_secret], raw))
    }
    assert not leaks, leaks
    assert len(run) >= 20
    # The scanner itself finds a real client token and a secret, so "none" means none.
    minted = jwt.encode({"iss": ACCESS_KEY}, SECRET_KEY, algorithm="HS256").encode()
    assert _leaks(b"Bearer " + minted + b" " + SECRET_KEY.encode(), [SECRET_KEY]) == [
        SECRET_KEY[:10] + "...",
        f"JWT {minted[:12]!r}...",
    ]


def test_the_store_file_holds_no_kling_secret(run: dict[str, bytes]):
    """The database holds the callback key (by design) but no Kling secret or JWT."""
    stores = {k: v for k, v in run.items() if k.startswith("store ")}
    assert stores
    needles = [SECRET_KEY, WHSEC, API_TOKEN]
    leaks = {k: found for k, v in stores.items() if (found := _leaks(v, needles))}
    assert not leaks, leaks


def test_reprs_never_show_a_secret(tmp_path: Path):
    """Guards the reprs: clients, auth, settings and store hide every secret."""
    clock = VirtualClock()
    auth = JwtAuth(ACCESS_KEY, SECRET_KEY, clock)
    sync = KlingClient(access_key=ACCESS_KEY, secret_key=SECRET_KEY, clock=clock)
    aclient = AsyncKlingClient(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, clock=clock
    )
    settings = Settings(
        access_key=ACCESS_KEY,
        secret_key=Secret(SECRET_KEY),
        api_key=Secret(API_TOKEN),
        webhook_secret=Secret(WHSEC),
    )
    try:
        with Store.open(str(tmp_path / "r.db")) as store:
            texts = [
                repr(auth),
                repr(sync),
                repr(aclient),
                repr(settings),
                str(settings),
            ]
            texts += [repr(store), repr(ReceiverSettings(webhook_secret=WHSEC))]
    finally:
        sync.close()
        asyncio.run(aclient.aclose())
    blob = "\n".join(texts).encode()
    assert not _leaks(blob, [SECRET_KEY, API_TOKEN, WHSEC]), texts


def test_a_401_error_never_shows_the_secret_or_the_token():
    """Guards error messages: a rejected JWT's error names neither key nor token."""
    config = SimConfig(access_key=ACCESS_KEY, secret_key="the-server-key-" + "0" * 20)
    with (
        SimServer(config) as server,
        KlingClient(
            base_url=server.url,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            retry=RetryPolicy(attempts=2, base=0.01, cap=0.02),
        ) as client,
        pytest.raises(KlingmonError) as caught,
    ):
        client.get("text2video", "123")
    exc = caught.value
    texts = [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
    assert not _leaks("\n".join(texts).encode(), [SECRET_KEY]), texts


def test_a_store_url_password_never_shows_in_its_error():
    """Guards URL masking: a refused PostgreSQL URL's error hides its password."""
    password = "pw-" + secrets.token_hex(12)
    with pytest.raises(StoreError) as caught:
        Store.open(f"postgresql+psycopg://u:{password}@127.0.0.1:1/x?connect_timeout=1")
    assert password not in str(caught.value)
    assert password not in repr(caught.value)
