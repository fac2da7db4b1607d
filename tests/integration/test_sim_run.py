"""klingmon.sim.run: the blocking entry point behind `klingmon sim`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from klingmon.testing import free_port


def test_run_serves_until_terminated():
    """run() serves the simulator on the given port until the process is stopped."""
    port = free_port()
    code = (
        "from klingmon.sim import SimConfig, run; "
        f"run(SimConfig(time_scale=100), host='127.0.0.1', port={port})"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/videos/text2video"
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(
                    url, headers={"Authorization": "Bearer sim-api-key"}, timeout=2
                )
                break
            except httpx.TransportError:
                assert process.poll() is None, "the simulator exited"
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.05)
        assert response.json()["code"] == 0
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.wait(timeout=10) in {0, -signal.SIGTERM}
