"""The simulator's legacy pools over real uvicorn on loopback: per model x pack type.

The server and the test share a VirtualClock: tasks finish when the test moves
time forward, never while it waits.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

from klingmon.sim import Faults, SimAccounts, SimConfig
from klingmon.testing import AppServer, SimServer, VirtualClock

if TYPE_CHECKING:
    from collections.abc import Iterator

T2V = "/v1/videos/text2video"
IMAGES = "/v1/images/generations"
KEY = {"Authorization": "Bearer sim-api-key"}
#: Long enough for every task of these seeds to end (the long tail included).
DAY = 86400.0


@contextmanager
def serve(**overrides: Any) -> Iterator[tuple[httpx.Client, VirtualClock]]:
    clock = VirtualClock()
    config = SimConfig(
        **{"admin": True, "seed": 11, "faults": Faults(fail_rate=0), **overrides}
    )
    with (
        SimServer(config, clock) as server,
        httpx.Client(base_url=server.url, headers=KEY, timeout=10) as client,
    ):
        yield client, clock


def _post(client: httpx.Client, path: str = T2V, **body: Any) -> tuple[int, int]:
    """(HTTP status, Kling code) of a create."""
    answer = client.post(path, json={"prompt": "a kite over dunes", **body})
    return answer.status_code, answer.json()["code"]


def _counters(client: httpx.Client) -> dict[str, Any]:
    data: dict[str, Any] = client.get("/admin/counters").json()
    return data


OK = (200, 0)
REFUSED = (429, 1303)


def test_two_legacy_models_run_side_by_side_each_up_to_its_pool():
    """Two models' tasks each fill their own pool of ``slots``; the next of each is
    a 1303, and a task of the full pool's neighbour is still admitted."""
    with serve(slots=3) as (client, clock):
        master = [_post(client, model_name="kling-v2-master") for _ in range(3)]
        assert master == [OK] * 3
        assert _post(client, model_name="kling-v2-master") == REFUSED
        # The full pool says nothing of kling-v2-6's: all three go in.
        assert [_post(client, model_name="kling-v2-6") for _ in range(3)] == [OK] * 3
        assert _post(client, model_name="kling-v2-6") == REFUSED
        counters = _counters(client)
        assert counters["in_flight_per_pool"] == {
            "kling-v2-6/video": 3,
            "kling-v2-master/video": 3,
        }
        assert counters["max_in_flight_per_pool"] == {
            "kling-v2-6/video": 3,
            "kling-v2-master/video": 3,
        }
        assert counters["answers_1303_per_pool"] == {
            "kling-v2-6/video": 1,
            "kling-v2-master/video": 1,
        }
        # Never more in one pool than its size; six legacy tasks in flight in all.
        assert (counters["max_in_flight"], counters["in_flight"]) == (3, 6)
        pools = {t["pool"] for t in counters["tasks"].values()}
        assert pools == {"kling-v2-6/video", "kling-v2-master/video"}
        clock.advance(DAY)  # the tasks end and give their slots back
        assert _post(client, model_name="kling-v2-master") == OK
        assert _counters(client)["in_flight_per_pool"]["kling-v2-master/video"] == 1


def test_absent_model_name_is_kling_v1_and_one_model_counts_as_before():
    """No ``model_name`` is Kling's default kling-v1: the same pool as naming it, so
    a one-model workload meets exactly the ``slots`` it met before pools."""
    with serve(slots=2) as (client, _clock):
        assert _post(client) == OK
        assert _post(client, model_name="kling-v1") == OK
        assert _post(client) == REFUSED
        assert _post(client, "/v1/videos/image2video", image="aHR0cA==") == REFUSED
        counters = _counters(client)
        assert counters["in_flight_per_pool"] == {"kling-v1/video": 2}
        assert counters["answers_1303_per_pool"] == {"kling-v1/video": 2}
        assert (counters["max_in_flight"], counters["in_flight"]) == (2, 2)
        assert counters["answers_1303"] == 2


def test_an_image_task_takes_n_slots_of_the_image_pool():
    """n=4 holds 4 slots of kling-v1/image (sized ``image_slots``, as its pack is on
    the new paths); the video pool of the same model is another pack's."""
    with serve(slots=1, image_slots=5) as (client, clock):
        assert _post(client, IMAGES, n=4) == OK
        assert _counters(client)["in_flight_per_pool"] == {"kling-v1/image": 4}
        assert _post(client, IMAGES, n=2) == REFUSED  # 4 + 2 > 5
        assert _post(client, IMAGES, n=1) == OK
        assert _post(client) == OK  # kling-v1/video: its one slot
        assert _post(client) == REFUSED
        assert _post(client, IMAGES, model_name="kling-v2", n=5) == OK
        counters = _counters(client)
        assert counters["in_flight_per_pool"] == {
            "kling-v1/image": 5,
            "kling-v1/video": 1,
            "kling-v2/image": 5,
        }
        assert counters["answers_1303_per_pool"] == {
            "kling-v1/image": 1,
            "kling-v1/video": 1,
        }
        clock.advance(DAY)
        assert _post(client, IMAGES, n=5) == OK
        assert _counters(client)["max_in_flight_per_pool"]["kling-v1/image"] == 5


def test_legacy_and_new_paths_of_one_version_are_kept_apart():
    """``kling-v2-6`` (legacy) and ``kling-2.6`` (new): two names, two pools, until
    Kling says they share one (UNCONFIRMED); klingmon's engine keeps them apart too."""
    with serve(slots=1, video_slots=1) as (client, _clock):
        assert _post(client, model_name="kling-v2-6") == OK
        assert _post(client, "/text-to-video/kling-2.6") == OK
        assert _post(client, model_name="kling-v2-6") == REFUSED
        assert _post(client, "/text-to-video/kling-2.6") == REFUSED
        counters = _counters(client)
        assert counters["max_in_flight_per_pool"] == {
            "kling-2.6/video": 1,
            "kling-v2-6/video": 1,
        }


def test_each_account_has_its_own_legacy_pools():
    """A full kling-v1 pool of one account refuses; another account's still admits."""
    accounts = SimAccounts(
        {
            name: SimConfig(
                admin=True,
                slots=1,
                faults=Faults(fail_rate=0.0),
                access_key=f"{name}-access",
                secret_key=f"{name}-secret-key-0123456789",
                api_key=f"{name}-api-key",
            )
            for name in ("studio", "agency")
        },
        clock=VirtualClock(),
    )
    server = AppServer(accounts.app)
    server.start()
    try:
        answers = [
            httpx.post(
                server.url + T2V,
                json={"prompt": "a"},
                headers={"Authorization": f"Bearer {key}-api-key"},
            ).json()["code"]
            for key in ("studio", "studio", "agency")
        ]
    finally:
        server.stop()
    assert answers == [0, 1303, 0]
    counts = accounts.counters()
    assert counts["studio"]["answers_1303_per_pool"] == {"kling-v1/video": 1}
    assert counts["agency"]["answers_1303_per_pool"] == {}
    assert counts["agency"]["max_in_flight_per_pool"] == {"kling-v1/video": 1}
