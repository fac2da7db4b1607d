"""The simulator's new API generation over real uvicorn on loopback.

The server and the test share a VirtualClock: tasks finish when the test moves
time forward, never while it waits.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import standardwebhooks
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from klingmon.sim import Faults, ResourcePack, SimConfig
from klingmon.testing import AppServer, SimServer, VirtualClock

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.requests import Request

T2V3 = "/text-to-video/kling-3.0"
SECRET = "integration-secret-key-0123456789abcdef"
KEY = {"Authorization": "Bearer sim-api-key"}
#: Long enough for every task of these seeds to end (the long tail included).
DAY = 86400.0


@contextmanager
def serve(**overrides: Any) -> Iterator[tuple[SimServer, httpx.Client, VirtualClock]]:
    clock = VirtualClock()
    config = SimConfig(
        **{
            "admin": True,
            "seed": 7,
            "secret_key": SECRET,
            "faults": Faults(fail_rate=0),
            **overrides,
        }
    )
    with (
        SimServer(config, clock) as server,
        httpx.Client(base_url=server.url, headers=KEY, timeout=10) as client,
    ):
        yield server, client, clock


def _create(client: httpx.Client, path: str = T2V3, **body: Any) -> dict[str, Any]:
    answer = client.post(path, json={"prompt": "a heron in the rain", **body})
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def _get(client: httpx.Client, *ids: str) -> list[dict[str, Any]]:
    answer = client.get("/tasks", params={"task_ids": ",".join(ids)})
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def _jwt(clock: VirtualClock) -> str:
    now = clock.now()
    claims = {"iss": "sim-access-key", "exp": int(now + 1800), "nbf": int(now - 5)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_create_query_and_download():
    """Numeric ids; a video output with signed URLs whose files hash as the sim says."""
    with serve() as (server, client, clock):
        task = _create(
            client,
            settings={"duration": 12, "aspect_ratio": "9:16"},
            options={"external_task_id": "ng-1"},
            unknown_field={"kept": True},
        )
        assert task["id"].isdigit()
        assert task["status"] == "submitted"
        assert "external_id" not in task  # absent from the create answer, as live
        assert task["create_time"] == task["update_time"]
        [seen] = _get(client, task["id"], "1234", "not-an-id")
        assert seen["status"] in {"submitted", "processing"}
        assert seen["outputs"] == []
        assert seen["external_id"] == "ng-1"
        assert "billing" not in seen
        clock.advance(DAY)
        [done] = _get(client, task["id"])
        assert done["status"] == "succeeded"
        assert done["message"] == ""
        [video] = done["outputs"]
        assert video["type"] == "video"
        assert video["duration"] == "12.1"
        assert video["id"].isdigit()
        for key in ("url", "watermark_url"):
            url = video[key]
            query = parse_qs(urlsplit(url).query)
            assert int(query["Expires"][0]) == task["create_time"] // 1000 + 30 * 86400
            assert query["Signature"][0]
            media = client.get(url)
            assert media.status_code == 200
            assert media.headers["content-type"] == "video/mp4"
            digest = hashlib.sha256(media.content).hexdigest()
            assert digest == server.sim.media_sha256(url)
        assert video["url"] != video["watermark_url"]
        [billing] = done["billing"]
        assert billing == {
            "charge_type": "unit",
            "amount": "4.8",
            "package_type": "video",
        }
        by_ext = client.get("/tasks", params={"external_task_ids": "ng-1,nope"})
        assert [t["id"] for t in by_ext.json()["data"]] == [task["id"]]


def test_api_keys_only_on_the_new_generation():
    """A JWT gets 401/1002 on new paths and still works on legacy ones."""
    with serve() as (server, _client, clock):
        token = _jwt(clock)
        url = server.url
        body = {"prompt": "x"}
        jwt_auth = {"Authorization": f"Bearer {token}"}
        refused = httpx.post(url + T2V3, json=body, headers=jwt_auth)
        assert refused.status_code == 401
        assert refused.json()["code"] == 1002
        for path in ("/tasks?task_ids=1", "/tasks"):
            method = "GET" if "?" in path else "POST"
            answer = httpx.request(method, url + path, headers=jwt_auth, json={})
            assert (answer.status_code, answer.json()["code"]) == (401, 1002)
        empty = httpx.post(url + T2V3, json=body)
        assert (empty.status_code, empty.json()) == (
            401,
            {**empty.json(), "code": 1001, "message": "Authorization is empty"},
        )
        unknown = httpx.post(
            url + T2V3, json=body, headers={"Authorization": "Bearer nope"}
        )
        assert (unknown.status_code, unknown.json()["code"]) == (401, 1002)
        assert unknown.json()["message"] == "api key not found"
        legacy = httpx.post(url + "/v1/videos/text2video", json=body, headers=jwt_auth)
        assert legacy.status_code == 200
        costs = httpx.get(url + "/account/costs", headers=jwt_auth)
        assert costs.status_code == 200


def test_get_tasks_parameters():
    """Exactly one id list; unknown ids missing; too many ids refused (1201)."""
    with serve(max_query_ids=3) as (_server, client, _clock):
        neither = client.get("/tasks")
        assert neither.status_code == 400
        assert neither.json()["code"] == 1201
        assert neither.json()["message"] == "task_ids or external_task_ids is required"
        both = client.get("/tasks", params={"task_ids": "1", "external_task_ids": "x"})
        assert (both.status_code, both.json()["code"]) == (400, 1201)
        many = client.get("/tasks", params={"task_ids": "1,2,3,4"})
        assert (many.status_code, many.json()["code"]) == (400, 1201)
        assert "at most 3" in many.json()["message"]
        unknown = client.get("/tasks", params={"external_task_ids": "nobody"})
        assert unknown.status_code == 200
        assert unknown.json()["data"] == []
        assert unknown.json()["code"] == 0
        # Legacy tasks are not new-generation tasks: missing here too.
        legacy = client.post("/v1/videos/text2video", json={"prompt": "x"})
        assert _get(client, legacy.json()["data"]["task_id"]) == []


def _page(client: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = client.post("/tasks", json=body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def test_cursor_paging_with_filters_and_window():
    """Pages newest first by cursor; empty answers carry neither result nor cursor."""
    with serve(video_slots=20) as (_server, client, clock):
        ids = []
        for _ in range(7):
            ids.append(_create(client)["id"])
            clock.advance(1.0)
        seen, cursor, pages = [], None, 0
        while True:
            body: dict[str, Any] = {"limit": 3}
            if cursor:
                body["cursor"] = cursor
            page = _page(client, **body)
            pages += 1
            seen += [t["id"] for t in page["result"]]
            assert page["count"] == len(page["result"])
            if not page["has_more"]:
                assert "next_cursor" not in page
                break
            cursor = page["next_cursor"]
            ids.append(_create(client)["id"])  # a newer task never shifts a page
        assert pages == 3
        assert seen == ids[:7][::-1]
        done = _page(client, filters=[{"key": "status", "values": ["succeeded"]}])
        assert done == {"count": 0, "has_more": False}
        clock.advance(DAY)
        done = _page(
            client,
            filters=[
                {"key": "status", "values": ["succeeded", "failed"]},
                {"key": "product_type", "values": ["video"]},
            ],
        )
        assert done["count"] == len(ids)
        assert _page(
            client, filters=[{"key": "product_type", "values": ["image"]}]
        ) == {
            "count": 0,
            "has_more": False,
        }
        first_ms = _get(client, ids[0])[0]["create_time"]
        window = _page(client, start_time=str(first_ms), end_time=str(first_ms + 2500))
        assert [t["id"] for t in window["result"]] == ids[:3][::-1]
        old = _page(client, start_time="1000", end_time="2000")
        assert old == {"count": 0, "has_more": False}
        for bad in ({"limit": 501}, {"limit": 0}, {"cursor": "%%%"}):
            answer = client.post("/tasks", json=bad)
            assert (answer.status_code, answer.json()["code"]) == (400, 1201)
        bad_filter = client.post(
            "/tasks", json={"filters": [{"key": "status", "values": ["succeed"]}]}
        )
        assert bad_filter.status_code == 400


def test_pools_per_model_and_pack_with_n_slots():
    """An image task takes n slots; pools are per model version x pack type."""
    with serve(video_slots=2, image_slots=4) as (server, client, clock):
        image = "/image-generation/kling-3.0"
        first = _create(client, image, n=3)
        refused = client.post(image, json={"prompt": "x", "n": 2})
        assert refused.status_code == 429
        assert refused.json()["code"] == 1303
        assert refused.json()["message"] == "parallel task over resource pack limit"
        _create(client, image, n=1)
        _create(client, "/image-generation/kling-o1", n=4)  # another model's pool
        _create(client, T2V3)  # the video pool of the same model
        _create(client, T2V3)
        third = client.post(T2V3, json={"prompt": "x"})
        assert (third.status_code, third.json()["code"]) == (429, 1303)
        _create(client, "/text-to-video/kling-3.0-turbo")
        legacy = client.post("/v1/videos/text2video", json={"prompt": "x"})
        assert legacy.status_code == 200  # legacy kling-v1: a pool of its own
        counters = client.get("/admin/counters").json()
        assert counters["max_in_flight_per_pool"] == {
            "kling-3.0/image": 4,
            "kling-o1/image": 4,
            "kling-3.0/video": 2,
            "kling-3.0-turbo/video": 1,
            "kling-v1/video": 1,
        }
        assert counters["answers_1303_per_pool"] == {
            "kling-3.0/image": 1,
            "kling-3.0/video": 1,
        }
        assert counters["answers_1303"] == 2
        assert counters["max_in_flight"] == 1
        assert counters["tasks"][first["id"]]["pool"] == "kling-3.0/image"
        clock.advance(DAY)  # finished tasks free their slots
        _create(client, image, n=4)
        assert server.sim.counters()["in_flight_per_pool"]["kling-3.0/image"] == 4


def test_outputs_of_every_type():
    """Image sets, audio (mp3 and wav), voice and element outputs, each file served."""
    with serve() as (server, client, clock):
        made = {
            "image": _create(client, "/image-generation/kling-o1", n=2),
            "audio": _create(client, "/text-to-audio/kling-audio"),
            "voice": _create(client, "/custom-voice/kling-voice", name="Ada"),
            "element": _create(
                client, "/custom-element/kling-element", name="fox", tags=["a"]
            ),
        }
        clock.advance(DAY)
        got = {kind: _get(client, task["id"])[0] for kind, task in made.items()}
        images = got["image"]["outputs"]
        assert [o["type"] for o in images] == ["image", "image"]
        assert {o["group_id"] for o in images} == {made["image"]["id"]}
        [audio] = got["audio"]["outputs"]
        assert audio["type"] == "audio"
        assert audio["mp3_duration"] == audio["wav_duration"] == "5.0"
        [voice] = got["voice"]["outputs"]
        assert (voice["type"], voice["name"], voice["status"]) == (
            "voice",
            "Ada",
            "succeeded",
        )
        [element] = got["element"]["outputs"]
        assert element["type"] == "element"
        assert element["tags"] == ["a"]
        assert set(element) >= {"description", "element_type", "owned_by", "status"}
        urls = {
            "image/png": [o[k] for o in images for k in ("url", "watermark_url")],
            "audio/mpeg": [audio["mp3_url"], voice["url"]],
            "audio/wav": [audio["wav_url"]],
            "image/png ": [element["references"][0]["url"]],
        }
        digests = set()
        for kind, group in urls.items():
            for url in group:
                media = client.get(url)
                assert media.status_code == 200, url
                assert media.headers["content-type"] == kind.strip()
                digest = hashlib.sha256(media.content).hexdigest()
                assert digest == server.sim.media_sha256(url)
                digests.add(digest)
        assert len(digests) == 8
        [bill] = got["image"]["billing"]
        assert (bill["package_type"], bill["amount"]) == ("image", "0.5")
        assert got["audio"]["billing"][0]["package_type"] == "audio"
        assert "billing" not in got["element"]


def test_retired_and_unknown_models():
    """Retired paths and models answer as Kling does; unknown models are refused."""
    retired = frozenset(
        {"/v1/videos/multi-image2video", "/text-to-video/kling-2.1", "kling-v1"}
    )
    with serve(retired=retired) as (_server, client, _clock):
        for path, body in (
            ("/v1/videos/multi-image2video", {"prompt": "x"}),
            ("/text-to-video/kling-2.1", {"prompt": "x"}),
            ("/v1/videos/text2video", {"prompt": "x", "model_name": "kling-v1"}),
        ):
            answer = client.post(path, json=body)
            assert answer.status_code == 400, path
            assert answer.json()["code"] == 1200
            assert answer.json()["message"] == "This API is no longer available"
        unknown = client.post("/text-to-video/kling-9.9", json={"prompt": "x"})
        assert (unknown.status_code, unknown.json()["code"]) == (400, 1201)
        nowhere = client.post("/no-such-family/kling-3.0", json={"prompt": "x"})
        assert nowhere.status_code == 404
        assert nowhere.json()["error"] == "Not Found"
        assert client.get(T2V3).status_code == 404
    with serve(new_models=frozenset({"/text-to-video/kling-9.9"})) as (_s, client, _c):
        assert client.post("/text-to-video/kling-9.9", json={"prompt": "x"}).is_success


def test_create_checks():
    """What is certain is checked (1201); unknown fields pass."""
    with serve(video_slots=10) as (_server, client, _clock):
        bad = [
            (T2V3, {"settings": {"duration": 16}}),
            ("/text-to-video/kling-2.6", {"settings": {"duration": 7}}),
            (T2V3, {"settings": {"audio": "native", "resolution": "720p"}}),
            (T2V3, {"prompt": "", "settings": {}}),
            (T2V3, {"prompt": "x" * 2501}),
            (T2V3, {"options": {"external_task_id": 5}}),
            ("/image-generation/kling-3.0", {"n": 10}),
        ]
        for path, body in bad:
            answer = client.post(path, json={"prompt": "x", **body})
            assert (answer.status_code, answer.json()["code"]) == (400, 1201), body
        _create(client, settings={"duration": 3, "multi_shot": True, "new": 1})
        _create(client, settings={"audio": "native", "resolution": "1080p"})
        _create(client, "/text-to-video/kling-2.6", settings={"duration": 10})
        _create(client, "/omni-video/kling-3.0-omni", contents=[{"type": "prompt"}])


def test_duplicate_external_ids_and_dropped_creates():
    """Reused external ids are refused across generations; counters count both."""
    with serve() as (_server, client, _clock):
        _create(client, options={"external_task_id": "dup"})
        again = client.post(
            T2V3, json={"prompt": "x", "options": {"external_task_id": "dup"}}
        )
        assert (again.status_code, again.json()["code"]) == (400, 1201)
        legacy = client.post(
            "/v1/videos/text2video", json={"prompt": "x", "external_task_id": "dup"}
        )
        assert legacy.status_code == 400
        client.post(
            "/admin/script", json={"route": "create", "status": 200, "drop": True}
        )
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(
                "/omni-video/kling-o1",
                json={"prompt": "x", "options": {"external_task_id": "lost"}},
            )
        found = client.get("/tasks", params={"external_task_ids": "lost"}).json()
        assert [t["external_id"] for t in found["data"]] == ["lost"]
        counters = client.get("/admin/counters").json()
        assert counters["creates_per_external_id"] == {"dup": 3, "lost": 1}
        assert counters["duplicate_creates_per_external_id"] == {"dup": 2}
        generations = {t["generation"] for t in counters["tasks"].values()}
        assert generations == {"new"}


def _costs(client: httpx.Client, **params: str) -> dict[str, Any]:
    answer = client.get("/account/costs", params={"start_time": "0", **params})
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def test_costs_fall_as_tasks_are_charged():
    """Remaining counts fall when tasks succeed; an exhausted pack leaves cash."""
    packs = (ResourcePack(name="small video", package_type="video", total=5),)
    with serve(packs=packs) as (_server, client, clock):
        [info] = _costs(client)["resource_pack_subscribe_infos"]
        assert (info["total_quantity"], info["remaining_quantity"]) == (5, 5)
        assert info["status"] == "online"
        first = _create(client, settings={"duration": 10})  # 4 units
        second = _create(client)  # 2 units: more than is left
        assert (
            _costs(client)["resource_pack_subscribe_infos"][0]["remaining_quantity"]
            == 5
        )
        clock.advance(DAY)
        [info] = _costs(client)["resource_pack_subscribe_infos"]
        assert info["remaining_quantity"] == 1
        one, two = _get(client, first["id"], second["id"])
        assert one["billing"][0]["charge_type"] == "unit"
        cash = two["billing"][0]
        assert cash["charge_type"] == "cash"
        assert {"currency", "list_price", "cash_type"} <= set(cash)
        assert _costs(client, resource_pack_name="nope") == {
            "code": 0,
            "msg": "success",
        }
        bad = client.get("/account/costs", params={"start_time": "soon"})
        assert bad.status_code == 400
        counters = client.get("/admin/counters").json()
        assert counters["packs_remaining"] == {"small video": 1}
    with serve(packs=()) as (_server, client, _clock):
        assert _costs(client) == {"code": 0, "msg": "success"}


def test_signed_callbacks_with_rotation():
    """New-format callbacks carry two v1 signatures; either secret verifies."""
    got: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: Request) -> Response:
        got.append((await request.body(), dict(request.headers)))
        return Response()

    new = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
    old = "whsec_b2xkc2VjcmV0b2xkc2VjcmV0b2xkc2VjcmV0MTI="
    other = "whsec_b3RoZXJzZWNyZXRvdGhlcnNlY3JldG90aGVyMTI="
    config = SimConfig(
        seed=5,
        time_scale=1000.0,
        faults=Faults(fail_rate=0),
        webhook_secret=new,
        webhook_secret_previous=old,
    )
    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with AppServer(receiver) as hooks, SimServer(config) as server:
        with httpx.Client(base_url=server.url, headers=KEY, timeout=10) as client:
            ignored = _create(client, callback_url=hooks.url + "/hook")
            task = _create(client, options={"callback_url": hooks.url + "/hook"})
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.sim.counters()["callbacks"]["scheduled"] == 2
    bodies = [json.loads(body) for body, _ in got]
    assert [b["status"] for b in bodies] == ["processing", "succeeded"]
    assert {b["id"] for b in bodies} == {task["id"]} != {ignored["id"]}
    assert bodies[1]["outputs"][0]["type"] == "video"
    assert "task_status" not in bodies[1]
    for body, headers in got:
        assert len(headers["webhook-signature"].split(" ")) == 2
        for secret in (new, old):
            standardwebhooks.Webhook(secret).verify(body, headers)
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(other).verify(body, headers)


def test_legacy_audio_results():
    """Legacy audio tasks answer ``task_result.audios`` with mp3 and wav files."""
    with serve() as (server, client, clock):
        path = "/v1/audio/text-to-audio"
        created = client.post(path, json={"prompt": "rain on a tin roof"})
        assert created.status_code == 200, created.text
        task_id = created.json()["data"]["task_id"]
        clock.advance(DAY)
        data = client.get(f"{path}/{task_id}").json()["data"]
        assert data["task_status"] == "succeed"
        assert data["final_unit_deduction"] == "0.5"
        [audio] = data["task_result"]["audios"]
        assert set(audio) == {
            "id",
            "url_mp3",
            "url_wav",
            "duration_mp3",
            "duration_wav",
        }
        for key, kind in (("url_mp3", "audio/mpeg"), ("url_wav", "audio/wav")):
            media = client.get(audio[key])
            assert media.headers["content-type"] == kind
            digest = hashlib.sha256(media.content).hexdigest()
            assert digest == server.sim.media_sha256(audio[key])
        listed = client.get(path).json()["data"]
        assert [t["task_id"] for t in listed] == [task_id]
