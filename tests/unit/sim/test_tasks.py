"""Create, query and list: Kling's envelope, task shape, slots and lifecycle."""

from __future__ import annotations

import uuid

import pytest
from simhelp import T2V, config, create

from klingmon.api._models import Envelope, Task
from klingmon.sim import Faults

I2V = "/v1/videos/image2video"
EXTEND = "/v1/videos/video-extend"
HOUR = 3600.0


async def test_create_answer_shape(connect, clock):
    """Create answers code 0/SUCCEED with a submitted task, created_at == updated_at."""
    _, client = await connect()
    response = await client.post(T2V, json={"prompt": "x", "external_task_id": "e-1"})
    body = response.json()
    assert set(body) == {"code", "message", "request_id", "data"}
    assert (body["code"], body["message"]) == (0, "SUCCEED")
    uuid.UUID(body["request_id"])
    data = body["data"]
    assert set(data) == {
        "task_id",
        "task_status",
        "task_info",
        "created_at",
        "updated_at",
    }
    assert data["task_status"] == "submitted"
    assert data["task_id"].isdigit()
    assert data["created_at"] == data["updated_at"] == round(clock.now() * 1000)
    assert data["task_info"] == {"external_task_id": "e-1"}
    Envelope.model_validate(body)
    Task.model_validate(data)


async def test_task_info_empty_without_external_id(connect):
    """Without an external id, task_info is {}."""
    _, client = await connect()
    assert (await create(client))["task_info"] == {}


async def test_base64_task_ids(connect):
    """task_id_style='base64' gives early-2025-style ids."""
    _, client = await connect(config(task_id_style="base64"))
    task_id = (await create(client))["task_id"]
    assert len(task_id) == 22
    assert not task_id.isdigit()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"prompt": "x", "mode": "professional"}, "mode value 'professional'"),
        ({"prompt": "x", "model_name": "kling-v9"}, "model is not supported"),
        ({}, "prompt is required"),
        ({"prompt": "x" * 2501}, "prompt"),
        ({"prompt": "x", "duration": "7"}, "duration value '7'"),
        ({"prompt": "x", "cfg_scale": 3}, "cfg_scale"),
    ],
)
async def test_validation_is_1201_naming_the_field(connect, body, words):
    """A body breaking a documented limit is 400/1201 naming the field."""
    sim, client = await connect()
    response = await client.post(T2V, json=body)
    assert response.status_code == 400
    assert response.json()["code"] == 1201
    assert words in response.json()["message"]
    assert "data" not in response.json()
    assert sim.counters()["tasks"] == {}


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        (I2V, {"image": "not base64 at all!"}, "image is invalid"),
        (T2V, {"prompt": "x", "external_task_id": 5}, "external_task_id"),
        ("/v1/videos/omni-video", {"prompt": "x" * 2501}, "prompt"),
        ("/v1/images/generations", {"prompt": "x", "n": 10}, "n value '10'"),
    ],
)
async def test_more_validation(connect, path, body, words):
    """Images, ids, generic prompts and image counts are checked too."""
    _, client = await connect()
    response = await client.post(path, json=body)
    assert response.json()["code"] == 1201
    assert words in response.json()["message"]


async def test_image2video_accepts_raw_base64(connect):
    """image2video takes raw base64 as well as URLs."""
    _, client = await connect()
    await create(client, I2V, image="iVBORw0KGgoAAAANSUhEUg==")


async def test_image2video_needs_an_image(connect):
    """image2video without image or image_tail is 1201."""
    _, client = await connect()
    response = await client.post(I2V, json={"prompt": "x"})
    assert response.json()["code"] == 1201
    assert "image" in response.json()["message"]


async def test_unknown_fields_are_ignored(connect):
    """Unknown top-level fields do not fail the create."""
    _, client = await connect()
    await create(client, multi_shot=True)


async def test_non_json_body_is_1200(connect):
    """A body that is not a JSON object is 400/1200."""
    _, client = await connect()
    response = await client.post(T2V, content=b"nope")
    assert (response.status_code, response.json()["code"]) == (400, 1200)


async def test_duplicate_external_id_is_refused_and_counted(connect):
    """A second create with the same external id is 1201; both are counted."""
    sim, client = await connect()
    await create(client, external_task_id="dup")
    response = await client.post(T2V, json={"prompt": "x", "external_task_id": "dup"})
    assert response.json()["code"] == 1201
    assert "external_task_id" in response.json()["message"]
    counters = sim.counters()
    assert counters["creates_per_external_id"] == {"dup": 2}
    assert counters["duplicate_creates_per_external_id"] == {"dup": 1}
    assert len(counters["tasks"]) == 1


async def test_slots_answer_1303_and_release_when_tasks_end(connect, clock):
    """Over the slots a create is 429/1303; a slot frees when a task ends."""
    sim, client = await connect(config(slots=2))
    await create(client)
    await create(client)
    response = await client.post(T2V, json={"prompt": "x"})
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == 1303
    assert body["message"] == "parallel task over resource pack limit"
    assert sim.counters()["in_flight"] == 2
    assert sim.counters()["answers_1303"] == 1
    clock.advance(10 * HOUR)
    assert sim.counters()["in_flight"] == 0
    await create(client)
    counters = sim.counters()
    assert counters["max_in_flight"] == 2
    assert counters["requests"]["create 429-1303"] == 1


async def test_queries_are_not_limited_by_slots(connect):
    """Queries still answer while every slot is taken."""
    _, client = await connect(config(slots=1))
    task = await create(client)
    response = await client.get(f"{T2V}/{task['task_id']}")
    assert response.status_code == 200


async def test_progression_follows_the_clock(connect, clock):
    """submitted -> processing -> succeed as the clock moves; updated_at bumps."""
    sim, client = await connect()
    task = await create(client)
    url = f"{T2V}/{task['task_id']}"
    transitions = sim.counters()["tasks"][task["task_id"]]["transitions"]
    assert transitions == [["submitted", task["created_at"]]]
    seen = []
    for _ in range(400):
        data = (await client.get(url)).json()["data"]
        if not seen or seen[-1][0] != data["task_status"]:
            seen.append((data["task_status"], data["updated_at"]))
        if data["task_status"] == "succeed":
            break
        clock.advance(5)
    assert [s for s, _ in seen] == ["submitted", "processing", "succeed"]
    assert seen[0][1] < seen[1][1] < seen[2][1]
    assert [list(s) for s in seen] == sim.counters()["tasks"][task["task_id"]][
        "transitions"
    ]
    video = data["task_result"]["videos"][0]
    uuid.UUID(video["id"])
    assert video["url"] == f"http://sim.test/media/{task['task_id']}/0.mp4"
    assert video["duration"] == "5.1"
    assert data["final_unit_deduction"] == "1"
    assert data["watermark_info"] == {"enabled": False}
    assert data["task_status_msg"] == ""
    assert Task.model_validate(data).urls == [video["url"]]


@pytest.mark.parametrize(
    ("fields", "units", "duration"),
    [
        ({"model_name": "kling-v1", "mode": "pro", "duration": "10"}, "7", "10.1"),
        ({"model_name": "kling-v1-6", "mode": "std"}, "2", "5.1"),
        ({"model_name": "kling-v2-master", "duration": "10"}, "20", "10.1"),
    ],
)
async def test_units_follow_the_billing_table(connect, clock, fields, units, duration):
    """final_unit_deduction follows reference §8.4; duration is '5.1' or '10.1'."""
    _, client = await connect()
    task = await create(client, **fields)
    clock.advance(10 * HOUR)
    data = (await client.get(f"{T2V}/{task['task_id']}")).json()["data"]
    assert data["final_unit_deduction"] == units
    assert data["task_result"]["videos"][0]["duration"] == duration


async def test_failed_task_shape(connect, clock):
    """A failed task is code 0, task_result {}, a reason, and no units."""
    _, client = await connect(config(faults=Faults(fail_rate=1.0)))
    task = await create(client)
    clock.advance(10 * HOUR)
    body = (await client.get(f"{T2V}/{task['task_id']}")).json()
    assert (body["code"], body["message"]) == (0, "SUCCEED")
    data = body["data"]
    assert data["task_status"] == "failed"
    assert data["task_result"] == {}
    assert data["task_status_msg"]
    assert data["final_unit_deduction"] == "0"


async def test_stuck_task_stays_processing(connect, clock):
    """A stuck task stays processing and keeps its slot."""
    sim, client = await connect(config(faults=Faults(fail_rate=0.0, stuck_rate=1.0)))
    task = await create(client)
    clock.advance(100 * HOUR)
    data = (await client.get(f"{T2V}/{task['task_id']}")).json()["data"]
    assert data["task_status"] == "processing"
    assert sim.counters()["in_flight"] == 1


async def test_time_scale_speeds_up_tasks(connect, clock):
    """With time_scale 1000 a task is done within a few seconds of clock time."""
    _, client = await connect(config(time_scale=1000.0))
    task = await create(client)
    clock.advance(30)
    data = (await client.get(f"{T2V}/{task['task_id']}")).json()["data"]
    assert data["task_status"] == "succeed"


async def test_same_seed_same_story(connect, clock):
    """Two simulators with one seed give the same ids and the same timings."""
    sim_a, client_a = await connect(config(seed=7))
    sim_b, client_b = await connect(config(seed=7))
    a, b = await create(client_a), await create(client_b)
    assert a["task_id"] == b["task_id"]
    clock.advance(HOUR)
    assert sim_a.counters()["tasks"] == sim_b.counters()["tasks"]


async def test_query_by_external_id_path_and_param(connect):
    """A task is found by task id, external id in the path, ?external_task_id=."""
    _, client = await connect()
    task = await create(client, external_task_id="mine-1")
    for url in (
        f"{T2V}/{task['task_id']}",
        f"{T2V}/mine-1",
        f"{T2V}?external_task_id=mine-1",
    ):
        body = (await client.get(url)).json()
        assert body["data"]["task_id"] == task["task_id"], url


@pytest.mark.parametrize(
    "url", [f"{T2V}/123", f"{T2V}?external_task_id=nobody", f"{I2V}/{{id}}"]
)
async def test_unknown_task_is_404_1203(connect, url):
    """An unknown id (or one of another endpoint) is 404/1203 'task not found'."""
    _, client = await connect()
    task = await create(client)
    response = await client.get(url.format(id=task["task_id"]))
    assert response.status_code == 404
    assert response.json()["code"] == 1203
    assert response.json()["message"] == "task not found"


@pytest.mark.parametrize("order", ["newest", "oldest", "random"])
async def test_list_pages_in_the_configured_order(connect, order):
    """The list pages through this endpoint's tasks in config.list_order."""
    _, client = await connect(config(list_order=order, slots=50))
    ids = [(await create(client))["task_id"] for _ in range(7)]
    await create(client, I2V, image="https://example.com/a.png")
    pages = []
    for page in (1, 2, 3):
        response = await client.get(T2V, params={"pageNum": page, "pageSize": 3})
        body = response.json()
        assert body["code"] == 0
        pages.append([t["task_id"] for t in body["data"]])
    assert [len(p) for p in pages] == [3, 3, 1]
    listed = [t for p in pages for t in p]
    if order == "newest":
        assert listed == ids[::-1]
    elif order == "oldest":
        assert listed == ids
    else:
        assert sorted(listed) == sorted(ids)


async def test_list_defaults_to_30(connect):
    """Without paging parameters the list gives the first 30 tasks."""
    _, client = await connect(config(slots=40))
    for _ in range(31):
        await create(client)
    assert len((await client.get(T2V)).json()["data"]) == 30


@pytest.mark.parametrize(
    "params",
    [
        {"pageNum": 0},
        {"pageNum": 1001},
        {"pageSize": 0},
        {"pageSize": 501},
        {"pageSize": "x"},
    ],
)
async def test_list_ranges_are_1201(connect, params):
    """pageNum outside 1-1000 or pageSize outside 1-500 is 400/1201."""
    _, client = await connect()
    response = await client.get(T2V, params=params)
    assert response.status_code == 400
    assert response.json()["code"] == 1201
    assert next(iter(params)) in response.json()["message"]


async def test_list_of_empty_endpoint(connect):
    """A known endpoint without tasks lists an empty array."""
    _, client = await connect()
    assert (await client.get(I2V)).json()["data"] == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/task/list", 404), ("GET", "/nope", 404), ("PUT", T2V, 405)],
)
async def test_unknown_route_is_spring_json(connect, method, path, status):
    """An unknown route answers Spring Boot's JSON error, not Kling's envelope."""
    _, client = await connect()
    response = await client.request(method, path)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"timestamp", "status", "error", "message", "path"}
    assert body["status"] == status
    assert body["path"] == path
    assert body["timestamp"].endswith("+0000")


async def test_extend_carries_parent_video(connect, clock):
    """video-extend results carry task_info.parent_video of the source video."""
    _, client = await connect()
    source = await create(client)
    clock.advance(10 * HOUR)
    done = (await client.get(f"{T2V}/{source['task_id']}")).json()["data"]
    video = done["task_result"]["videos"][0]
    extended = await create(client, EXTEND, video_id=video["id"])
    assert extended["task_info"]["parent_video"]["id"] == video["id"]
    clock.advance(10 * HOUR)
    data = (await client.get(f"{EXTEND}/{extended['task_id']}")).json()["data"]
    assert data["task_info"]["parent_video"] == {
        "id": video["id"],
        "url": video["url"],
        "duration": "5.1",
    }
    assert data["task_result"]["videos"][0]["duration"] == "9.6"


async def test_image_endpoint_returns_images(connect, clock):
    """/v1/images/* results are images[] with index and url, n slots held."""
    sim, client = await connect()
    task = await create(client, "/v1/images/generations", n=3)
    assert sim.counters()["in_flight"] == 3
    clock.advance(10 * HOUR)
    path = f"/v1/images/generations/{task['task_id']}"
    data = (await client.get(path)).json()["data"]
    images = data["task_result"]["images"]
    assert [i["index"] for i in images] == [0, 1, 2]
    assert "videos" not in data["task_result"]


async def test_generic_video_endpoint(connect, clock):
    """Any /v1/videos/<name> takes creates of the same shape."""
    _, client = await connect()
    task = await create(client, "/v1/videos/omni-video", model_name="kling-v3-omni")
    clock.advance(10 * HOUR)
    body = (await client.get(f"/v1/videos/omni-video/{task['task_id']}")).json()
    assert body["data"]["task_status"] == "succeed"


async def test_list_items_say_what_a_query_says_in_every_state(connect, clock):
    """Each state's view is built once and reused: a list item and a query agree
    with each other, and both move on at each transition."""
    _, client = await connect(config(slots=5))
    task_id = (await create(client))["task_id"]
    seen: list[str] = []
    for _ in range(200):  # minutes of Kling time, in steps of 10 s
        listed = (await client.get(T2V, params={"pageSize": 5})).json()["data"]
        queried = (await client.get(f"{T2V}/{task_id}")).json()["data"]
        assert listed == [queried]
        Task.model_validate(queried)
        if not seen or seen[-1] != queried["task_status"]:
            seen.append(queried["task_status"])
        clock.advance(10)
    assert seen == ["submitted", "processing", "succeed"]
