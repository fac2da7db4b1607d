"""The README's "first batch on the simulator" block, run as is in a clean shell."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKED = re.compile(
    r"<!-- first-batch:start -->\n```sh\n(.*?)```\n<!-- first-batch:end -->", re.DOTALL
)


def _block() -> str:
    match = MARKED.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert match, "README.md lost its first-batch markers"
    return match.group(1)


def _venv() -> Path:
    """The checkout's .venv, else the environment running the tests (CI)."""
    for candidate in (ROOT / ".venv", Path(sys.prefix)):
        if (candidate / "bin" / "klingmon").is_file():
            return candidate
    pytest.skip("no virtualenv with a klingmon script to run the README against")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return False
    except OSError:
        return True


@pytest.mark.skipif(shutil.which("curl") is None, reason="the block waits with curl")
def test_first_batch_block_runs_verbatim(tmp_path):
    """Pasted into bash in a clean environment, the block downloads both videos."""
    (tmp_path / ".venv").symlink_to(_venv(), target_is_directory=True)
    port = _free_port()
    # A clean environment, as a new terminal would have; PORT only because 8787 may
    # be taken on a shared machine (the block reads ${PORT:-8787}).
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PORT": str(port)}
    proc = subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-e", "-c", _block()],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    videos = sorted(tmp_path.glob("klingmon-downloads/*/*.mp4"))
    assert len(videos) == 2, (out, err)
    assert all(v.stat().st_size > 0 for v in videos)
    assert all(v.with_name(v.name + ".json").is_file() for v in videos)
    assert "succeed 2" in out
    deadline = time.monotonic() + 10
    while not _closed(port):  # `kill %1` stopped the simulator
        assert time.monotonic() < deadline, "the simulator outlived the block"
        time.sleep(0.05)
