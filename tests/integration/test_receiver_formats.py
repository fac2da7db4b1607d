"""Both callback formats on one route, over real HTTP on loopback.

The new generation's bare task object (``id``/``status``/``outputs``/``billing``)
and the legacy ``task_id``/``task_status`` one reach ``/callbacks/kling/<token>``;
Standard Webhooks signatures verify under any of several configured secrets, with
any one of several ``v1,`` signatures; wrong or stale ones are refused; Kling's
official test vector passes through the real route.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from receiver_support import app_for, tracked_store, url
from web_support import SECRET

from klingmon._clock import to_ms
from klingmon.api import Task, snapshot_of
from klingmon.domain import Cost, TaskStatus
from klingmon.sim import sign_webhook
from klingmon.store import NewTask
from klingmon.testing import AppServer, VirtualClock
from klingmon.web import callback_token

if TYPE_CHECKING:
    from pathlib import Path

    from klingmon.store import Store

WHSEC = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
OTHER = "whsec_b3RoZXJzZWNyZXRvdGhlcnNlY3JldG90aGVyc2VjcmV0MTI="
#: Kling's official test vector (get-started/callbacks).
VECTOR_ID = "9876543210"
VECTOR_STAMP = 1781080794
VECTOR_BODY = (
    b'{"id":"1234567890","status":"succeeded","message":"",'
    b'"create_time":1781080778802,"update_time":1781080794151}'
)
VECTOR_SIGNATURE = "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="


def _new_body(clock: VirtualClock, i: int = 0, **extra: Any) -> bytes:
    """A new-generation callback for task ``i``: a video, an audio, billing."""
    now = to_ms(clock.now())
    task: dict[str, Any] = {
        "id": f"kt-{i}",
        "status": "succeeded",
        "message": "",
        "create_time": now - 5000,
        "update_time": now - 100,
        "external_id": f"km-{i}",
        "outputs": [
            {
                "type": "video",
                "id": "v1",
                "url": "https://cdn.test/v.mp4",
                "watermark_url": "https://cdn.test/v-wm.mp4",
                "duration": "5.1",
            },
            {
                "type": "audio",
                "id": "a1",
                "mp3_url": "https://cdn.test/a.mp3",
                "wav_url": "https://cdn.test/a.wav",
                "mp3_duration": "5",
                "wav_duration": "5",
            },
        ],
        "billing": [
            {"charge_type": "unit", "amount": "2.5", "package_type": "video"},
            {
                "charge_type": "cash",
                "amount": "0.42",
                "currency": "USD",
                "cash_type": "balance",
                "list_price": "0.6",
            },
        ],
    }
    task.update(extra)
    return json.dumps(task).encode()


def _signed(secret: str, raw: bytes, stamp: float, msg_id: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(stamp)),
        "webhook-signature": sign_webhook(secret, msg_id, int(stamp), raw),
    }


async def _post(
    store: Store, clock: VirtualClock, path: str, raw: bytes, headers, **kw
):
    with AppServer(app_for(store, clock, **kw)) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            return await http.post(path, content=raw, headers=headers)


async def test_a_signed_new_format_callback_is_applied_with_its_cost(tmp_path: Path):
    clock = VirtualClock()
    store = tracked_store(tmp_path, clock)
    raw = _new_body(clock)
    answer = await _post(
        store,
        clock,
        url(0),
        raw,
        _signed(WHSEC, raw, clock.now(), "m-1"),
        webhook_secret=WHSEC,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "applied"}
    row = store.tasks.task("km-0")
    assert row is not None
    assert row.status is TaskStatus.SUCCEED
    assert row.units == 2.5
    assert row.cost == Cost(
        units=2.5,
        cash=0.42,
        currency="USD",
        package_type="video",
        list_price=0.6,
        cash_type="balance",
    )
    report = store.reports.report(row.batch_id)
    assert report.units == 2.5
    assert report.cash == {"USD": pytest.approx(0.42)}
    assert store.reports.batch_summaries()[row.batch_id].cash == {
        "USD": pytest.approx(0.42)
    }
    kinds = sorted((d.kind, d.idx, d.url) for d in store.downloads.download_rows(None))
    assert kinds == [
        ("audio", 0, "https://cdn.test/a.mp3"),
        ("audio", 1, "https://cdn.test/a.wav"),
        ("video", 0, "https://cdn.test/v.mp4"),
    ]
    store.close()


async def test_a_new_format_callback_without_external_id_matches_by_kling_id(
    tmp_path: Path,
):
    clock = VirtualClock()
    store = tracked_store(tmp_path, clock)
    raw = _new_body(clock, 1, external_id=None, status="processing", outputs=[])
    answer = await _post(
        store,
        clock,
        url(1),
        raw,
        _signed(WHSEC, raw, clock.now(), "m-2"),
        webhook_secret=WHSEC,
    )
    assert answer.status_code == 200, answer.text
    row = store.tasks.task("km-1")
    assert row is not None
    assert row.status is TaskStatus.PROCESSING
    store.close()


async def test_an_unsigned_new_format_callback_only_hints(tmp_path: Path):
    """Confirmation on, no secret: the status is a hint; no result, no cost."""
    clock = VirtualClock()
    store = tracked_store(tmp_path, clock)
    raw = _new_body(clock)
    answer = await _post(
        store, clock, url(0), raw, {"content-type": "application/json"}
    )
    assert answer.status_code == 202, answer.text
    row = store.tasks.task("km-0")
    assert row is not None
    assert row.status is TaskStatus.SUBMITTED
    assert row.result is None
    assert row.cost is None
    assert store.downloads.download_rows(None) == []
    hint = [e for e in store.outbox.events() if e.kind == "hint"]
    assert hint
    assert hint[-1].payload["status"] == "succeeded"
    assert "billing" not in hint[-1].payload
    store.close()


@pytest.mark.parametrize("right_first", [True, False])
async def test_a_header_with_two_signatures_passes_when_either_matches(
    tmp_path: Path, right_first: bool
):
    clock = VirtualClock()
    store = tracked_store(tmp_path, clock)
    raw = _new_body(clock)
    headers = _signed(WHSEC, raw, clock.now(), "m-3")
    wrong = sign_webhook(OTHER, "m-3", int(clock.now()), raw)
    both = [headers["webhook-signature"], wrong]
    headers["webhook-signature"] = " ".join(both if right_first else both[::-1])
    answer = await _post(store, clock, url(0), raw, headers, webhook_secret=WHSEC)
    assert answer.status_code == 200, answer.text
    assert store.tasks.task("km-0").status is TaskStatus.SUCCEED
    store.close()


async def test_several_configured_secrets_each_verify(tmp_path: Path):
    """During a rotation both secrets are configured; either one's signature passes."""
    clock = VirtualClock()
    store = tracked_store(tmp_path, clock)
    raw = _new_body(clock)
    headers = _signed(OTHER, raw, clock.now(), "m-4")
    headers = {k.upper(): v for k, v in headers.items()}  # names in any case
    answer = await _post(
        store, clock, url(0), raw, headers, webhook_secret=f"{WHSEC} {OTHER}"
    )
    assert answer.status_code == 200, answer.text
    assert store.tasks.task("km-0").status is TaskStatus.SUCCEED
    store.close()


@pytest.mark.parametrize("fault", ["wrong", "stale", "future", "tampered"])
async def test_a_wrong_or_stale_signature_is_refused(tmp_path: Path, fault: str):
    clock = VirtualClock()
    store = tracked_store(tmp_path, clock)
    raw = _new_body(clock)
    now = clock.now()
    secret = OTHER if fault == "wrong" else WHSEC
    stamp = {"stale": now - 301, "future": now + 301}.get(fault, now)
    headers = _signed(secret, raw, stamp, "m-5")
    body = raw.replace(b"0.42", b"0.01") if fault == "tampered" else raw
    answer = await _post(store, clock, url(0), body, headers, webhook_secret=WHSEC)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "bad_signature"
    row = store.tasks.task("km-0")
    assert row is not None
    assert row.status is TaskStatus.SUBMITTED
    assert row.cost is None
    store.close()


async def test_kling_s_official_test_vector_through_the_route(tmp_path: Path):
    clock = VirtualClock(VECTOR_STAMP + 3.0)
    store = tracked_store(tmp_path, clock, n=0)
    created = 1781080778802
    store.tasks.create_batch(
        "vector",
        [
            NewTask(
                endpoint="/text-to-video/kling-3.0",
                body={"prompt": "p"},
                external_task_id="km-vector",
                task=snapshot_of(
                    Task(
                        task_id="1234567890",
                        task_status="submitted",
                        created_at=created,
                        updated_at=created,
                        task_info={"external_task_id": "km-vector"},
                    )
                ),
            )
        ],
        to_ms(clock.now()),
    )
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Webhook-Id": VECTOR_ID,
        "Webhook-Timestamp": str(VECTOR_STAMP),
        "Webhook-Signature": VECTOR_SIGNATURE,
    }
    route = "/callbacks/kling/" + callback_token(SECRET, "km-vector")
    answer = await _post(
        store, clock, route, VECTOR_BODY, headers, webhook_secret=WHSEC
    )
    assert answer.status_code == 200, answer.text
    row = store.tasks.task("km-vector")
    assert row is not None
    assert row.status is TaskStatus.SUCCEED
    # The same delivery again is a duplicate (the webhook-id was recorded).
    again = await _post(store, clock, route, VECTOR_BODY, headers, webhook_secret=WHSEC)
    assert again.json() == {"status": "duplicate"}
    store.close()


async def test_metrics_and_the_dashboard_show_units_and_cash_per_batch(
    tmp_path: Path,
):
    clock = VirtualClock()
    store = tracked_store(tmp_path, clock)
    raw = _new_body(clock)
    app = app_for(store, clock, webhook_secret=WHSEC)
    with AppServer(app) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            headers = _signed(WHSEC, raw, clock.now(), "m-6")
            answer = await http.post(url(0), content=raw, headers=headers)
            assert answer.status_code == 200, answer.text
            metrics = (await http.get("/metrics")).text
            overview = (await http.get("/")).text
    batch = store.tasks.task("km-0").batch_id
    assert f'klingmon_batch_units{{batch="{batch}"}} 2.5' in metrics
    assert f'klingmon_batch_cash{{batch="{batch}",currency="USD"}} 0.42' in metrics
    assert "0.42 USD" in overview
    store.close()
