"""The receiver takes callbacks for tasks of every account, each signed with its own
account's Webhook Secret (the settings hand the receiver all of them).

A real app under uvicorn on loopback, over a store holding one task sent on each of
two accounts; Kling's signed callbacks apply at once, without a confirming request.
"""

from __future__ import annotations

import base64
import json
import time

import httpx
from test_store_contract import wire

from klingmon.config import AccountSettings, Secret, Settings
from klingmon.domain import TaskStatus
from klingmon.runtime import build_runtime
from klingmon.sim import sign_webhook
from klingmon.store import NewTask, Store
from klingmon.testing import AppServer
from klingmon.web import ReceiverSettings, callback_token, create_app

SECRET = b"accounts-receiver-test-secret-0123456789ab"
V3 = "/text-to-video/kling-3.0"


def _whsec(word: str) -> str:
    return "whsec_" + base64.b64encode(word.encode() * 4).decode()


WHSEC = {"default": _whsec("top-account-"), "studio": _whsec("studio-account")}


def _signed(row, status: str, whsec: str) -> tuple[bytes, dict[str, str]]:
    now = int(time.time())
    raw = json.dumps(
        {
            "task_id": row.task_id,
            "task_status": status,
            "task_status_msg": "",
            "updated_at": now * 1000,
            "task_info": {"external_task_id": row.external_task_id},
        }
    ).encode()
    msg_id = f"msg-{row.id}-{status}"
    return raw, {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": sign_webhook(whsec, msg_id, now, raw),
    }


def _one_task_on_each(settings: Settings) -> Store:
    """A store holding one task Kling is processing on each account."""
    store = Store.open(settings.db)
    now_ms = int(time.time() * 1000)
    store.tasks.create_batch("top", [NewTask(V3, {"prompt": "a"})], now_ms)
    store.tasks.create_batch(
        "studio", [NewTask(V3, {"prompt": "b"})], now_ms, accounts=["studio"]
    )
    for row in store.tasks.claim_submissions("w", now_ms, 60_000, slots=5):
        store.tasks.mark_submitting(row.id, now_ms)
        store.tasks.mark_submitted(
            row.id, wire(f"k{row.id}", "processing", now_ms), now_ms, now_ms
        )
    return store


def test_each_account_s_signed_callbacks_apply(tmp_path):
    settings = Settings(
        db=str(tmp_path / "k.db"),
        webhook_secret=Secret(WHSEC["default"]),
        accounts=(
            AccountSettings(name="studio", webhook_secret=Secret(WHSEC["studio"])),
        ),
    )
    assert settings.signed_accounts() == {"default", "studio"}
    assert Settings(accounts=settings.accounts[:0]).signed_accounts() == set()
    store = _one_task_on_each(settings)
    secrets = settings.webhook_secrets()
    assert secrets is not None
    app = create_app(
        store, secret=SECRET, settings=ReceiverSettings(webhook_secret=secrets.get())
    )
    server = AppServer(app)
    server.start()
    try:
        with httpx.Client(base_url=server.url) as http:
            studio = next(r for r in store.tasks.tasks() if r.account == "studio")
            raw, headers = _signed(studio, "succeed", _whsec("nobody-at-all"))
            token = callback_token(SECRET, studio.external_task_id)
            forged = http.post(
                f"/callbacks/kling/{token}", content=raw, headers=headers
            )
            assert forged.status_code == 401  # no account's secret signed it
            assert store.tasks.task(studio.id).status is TaskStatus.PROCESSING
            for row in store.tasks.tasks():
                account = row.account or "?"
                raw, headers = _signed(row, "succeed", WHSEC[account])
                token = callback_token(SECRET, row.external_task_id)
                answer = http.post(
                    f"/callbacks/kling/{token}", content=raw, headers=headers
                )
                assert answer.status_code == 200, (account, answer.text)
    finally:
        server.stop()
    rows = store.tasks.tasks()
    assert {r.account: r.status for r in rows} == {
        "default": TaskStatus.SUCCEED,
        "studio": TaskStatus.SUCCEED,
    }
    store.close()


def test_an_account_without_a_secret_still_has_its_callbacks_heard(tmp_path):
    """Kling signs per account: with a secret for studio only, the default
    account's callbacks come unsigned and are taken as hints (a final status waits
    for a confirming GET); an unsigned one for studio's task is refused."""
    settings = Settings(
        db=str(tmp_path / "k.db"),
        accounts=(
            AccountSettings(name="studio", webhook_secret=Secret(WHSEC["studio"])),
        ),
    )
    assert settings.unsigned_accounts() == {"default"}
    store = _one_task_on_each(settings)
    secrets = settings.webhook_secrets()
    assert secrets is not None
    receiver = ReceiverSettings(
        webhook_secret=secrets.get(), unsigned_accounts=settings.unsigned_accounts()
    )
    server = AppServer(create_app(store, secret=SECRET, settings=receiver))
    server.start()
    answers = {}
    try:
        with httpx.Client(base_url=server.url) as http:
            for row in store.tasks.tasks():
                raw, headers = _signed(row, "succeed", WHSEC["studio"])
                bare = {"content-type": headers["content-type"]}  # no signature
                token = callback_token(SECRET, row.external_task_id)
                answer = http.post(
                    f"/callbacks/kling/{token}", content=raw, headers=bare
                )
                answers[row.account] = answer.status_code
    finally:
        server.stop()
    assert answers == {"default": 202, "studio": 401}
    rows = {r.account: r for r in store.tasks.tasks()}
    hints = [e.kind for e in store.outbox.events() if e.task_id == rows["default"].id]
    assert "hint" in hints  # heard, to be confirmed by a GET
    assert {r.status for r in rows.values()} == {TaskStatus.PROCESSING}
    store.close()


def test_the_runtime_s_web_app_checks_the_settings_webhook_secrets(tmp_path):
    """Every front's app (``serve``'s, the benchmarks') checks signatures as the
    settings say, without being told again: a studio callback signed with the
    secret applies at once, an unsigned one for it is refused, and the default
    account's (no secret) is a hint. The engine hears which accounts sign."""
    settings = Settings(
        db=str(tmp_path / "k.db"),
        callback_secret=Secret(SECRET.decode()),
        accounts=(
            AccountSettings(name="studio", webhook_secret=Secret(WHSEC["studio"])),
        ),
    )
    store = _one_task_on_each(settings)
    store.close()
    answers: dict[str, list[int]] = {}
    with build_runtime(settings) as runtime:
        assert runtime.engine_settings().signed_accounts == {"studio"}
        server = AppServer(runtime.web_app())
        server.start()
        try:
            with httpx.Client(base_url=server.url) as http:
                for row in runtime.store.tasks.tasks():
                    raw, headers = _signed(row, "succeed", WHSEC["studio"])
                    bare = {"content-type": headers["content-type"]}
                    token = callback_token(SECRET, row.external_task_id)
                    path = f"/callbacks/kling/{token}"
                    answers[row.account or "?"] = [
                        http.post(path, content=raw, headers=bare).status_code,
                        http.post(path, content=raw, headers=headers).status_code,
                    ]
        finally:
            server.stop()
        rows = {r.account: r.status for r in runtime.store.tasks.tasks()}
    # default: unsigned is a hint (202), and then still a hint; studio: 401, 200.
    assert answers == {"default": [202, 202], "studio": [401, 200]}
    assert rows == {"default": TaskStatus.PROCESSING, "studio": TaskStatus.SUCCEED}
