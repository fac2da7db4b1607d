"""The README's commands: ``klingmon sim`` answers curl, ``klingmon demo`` finishes."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from cli_support import klingmon

from klingmon.testing import free_port


def _wait_for_port(port: int, proc: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"klingmon sim exited: {proc.communicate()[1]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail("klingmon sim did not listen in time")


def _curl(*args: str) -> dict[str, object]:
    out = subprocess.run(
        ["curl", "-s", "--max-time", "5", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_sim_answers_the_readme_curls():
    """`klingmon sim` serves the documented envelope to a plain curl."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "klingmon",
            "sim",
            "--port",
            str(port),
            "--admin",
            "--time-scale",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_port(port, proc, time.monotonic() + 20)
        base = f"http://127.0.0.1:{port}"
        auth = "Authorization: Bearer sim-api-key"
        created = _curl(
            "-H",
            auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"prompt": "a red fox in the snow"}',
            f"{base}/v1/videos/text2video",
        )
        assert created["code"] == 0
        assert created["message"] == "SUCCEED"
        data = created["data"]
        assert isinstance(data, dict)
        assert data["task_status"] == "submitted"
        assert data["created_at"] == data["updated_at"]
        listed = _curl("-H", auth, f"{base}/v1/videos/text2video?pageNum=1&pageSize=5")
        assert [t["task_id"] for t in listed["data"]] == [data["task_id"]]
        refused = _curl(f"{base}/v1/videos/text2video?pageNum=1&pageSize=5")
        assert refused["code"] == 1001
        counters = _curl(f"{base}/admin/counters")
        assert counters["requests_by_route"]["create"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert proc.returncode in {0, -signal.SIGTERM}


#: The sample batch's new-generation rows (demo_batch.jsonl), beside 30 legacy ones.
_NEW_ROWS = {
    "/text-to-video/kling-3.0": 1,
    "/omni-video/kling-3.0-omni": 1,
    "/image-generation/kling-3.0": 1,
}
_IMAGES_PER_TASK = 3


@pytest.mark.timeout(120)
def test_demo_ends_with_every_task_terminal_and_a_report(tmp_path):
    """`klingmon demo` runs the sample batch, both generations, to the end.

    The figures changed with issue 16: the sample batch gained three
    new-generation rows (30 legacy + 3), and an image task of three images.
    """
    result = klingmon(
        "demo",
        "--time-scale",
        "400",
        "--json",
        "--out",
        str(tmp_path / "demo"),
        env={"PATH": "/usr/bin:/bin"},
        timeout=110,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert all(batch["done"] for batch in record["batches"])
    demo = next(b for b in record["batches"] if b["batch"] == "demo")
    assert demo["total"] == 33
    assert record["report"]["total"] == 33
    assert sum(record["report"]["by_status"].values()) == 33
    assert len(record["batches"]) == 5
    # Kling accepted every row, new generation included: nothing was rejected.
    assert "rejected" not in record["report"]["by_status"]
    endpoints = record["endpoints"]
    for path, rows in _NEW_ROWS.items():
        assert sum(endpoints[path].values()) == rows
        assert set(endpoints[path]) <= {"succeed", "failed"}
    image = "/image-generation/kling-3.0"
    # Each extend is a batch of one; the simulator fails a few tasks at random.
    extends = sum(
        b["counts"].get("succeed", 0)
        for b in record["batches"]
        if b["batch"].startswith("demo-extend")
    )
    assert extends >= 1
    clips = extends + sum(
        n.get("succeed", 0) for p, n in endpoints.items() if p != image
    )
    images = _IMAGES_PER_TASK * endpoints[image].get("succeed", 0)
    files = record["downloads"]["files"]
    assert files["done"] == clips + images
    downloads = tmp_path / "demo" / "downloads"
    assert len(list(downloads.rglob("*.mp4"))) == clips
    assert len(list(downloads.rglob("*.png"))) == images


def test_sim_serves_the_new_generation_as_configured():
    """--new-model, --retired and --video-slots shape the new generation's answers."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "klingmon",
            "sim",
            "--port",
            str(port),
            "--api-key",
            "my-key",
            "--new-model",
            "/text-to-video/kling-9.0",
            "--new-model",
            "/text-to-video/kling-2.6",
            "--retired",
            "/text-to-video/kling-2.6",
            "--video-slots",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_port(port, proc, time.monotonic() + 20)
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": "Bearer my-key"}
        body = {"prompt": "a fox"}
        with httpx.Client(base_url=base, headers=auth, timeout=5) as http:
            first = http.post("/text-to-video/kling-9.0", json=body).json()
            second = http.post("/text-to-video/kling-9.0", json=body).json()
            retired = http.post("/text-to-video/kling-2.6", json=body).json()
            unserved = http.post("/text-to-video/kling-3.0", json=body)
            queried = http.get("/tasks", params={"task_ids": first["data"]["id"]})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert first["code"] == 0
    assert first["data"]["status"] == "submitted"
    assert second["code"] == 1303  # one video slot per model version
    assert retired["code"] == 1200
    assert "no longer available" in retired["message"]
    assert unserved.json()["code"] != 0
    assert [t["id"] for t in queried.json()["data"]] == [first["data"]["id"]]
