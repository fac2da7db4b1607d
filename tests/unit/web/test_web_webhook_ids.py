"""A long ``webhook-id`` dedupes whole: two ids alike in 200 characters are two."""

from __future__ import annotations

import pytest
from web_support import WHSEC, app_for, body, client, fresh_clock, tracked_store, url

from klingmon.sim import sign_webhook
from klingmon.web._receiver import delivery_key


@pytest.fixture
def clock():
    return fresh_clock()


@pytest.fixture
def store(tmp_path, clock):
    with tracked_store(tmp_path, clock) as s:
        yield s


def _signed(raw: bytes, stamp: int, msg_id: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_webhook(WHSEC, msg_id, stamp, raw),
    }


async def test_ids_sharing_a_long_prefix_are_two_deliveries(store, clock):
    """The second id differs after character 200: applied, not a duplicate."""
    prefix = "msg_" + "x" * 300
    stamp = int(clock.now())
    first = body(0, "processing", clock)
    second = body(0, "succeed", clock)
    async with client(app_for(store, clock, webhook_secret=WHSEC)) as http:
        one = await http.post(
            url(0), content=first, headers=_signed(first, stamp, prefix + "a")
        )
        two = await http.post(
            url(0), content=second, headers=_signed(second, stamp, prefix + "b")
        )
        again = await http.post(
            url(0), content=second, headers=_signed(second, stamp, prefix + "b")
        )
    assert one.json() == {"status": "applied"}
    assert two.json() == {"status": "applied"}
    assert again.json() == {"status": "duplicate"}
    assert store.tasks.task("km-0").status == "succeed"


def test_delivery_keys_fit_the_column_and_keep_short_ids():
    """Short ids are kept as they are; long ones become a 71-character hash."""
    assert delivery_key("msg_1") == "msg_1"
    long_a, long_b = "m" * 500 + "a", "m" * 500 + "b"
    assert len(delivery_key(long_a)) == 71
    assert delivery_key(long_a) != delivery_key(long_b)
