"""The engine's thread in ``serve``: an answer given meanwhile gets the interpreter
lock back sooner, and the process's settings come back when the engine ends."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import pytest

from klingmon.api import AsyncKlingClient
from klingmon.engine import EngineThread, Monitor
from klingmon.engine._thread import ANSWER_SWITCH_S, SWITCH_S
from klingmon.store import Store, writer_gate

if TYPE_CHECKING:
    from pathlib import Path

#: The interpreter keeps the interval in whole microseconds.
_US = 1e-6


def test_an_answer_shortens_the_switch_interval_while_it_is_given(tmp_path: Path):
    store = Store.open(str(tmp_path / "k.db"))
    before = sys.getswitchinterval()
    # No task is stored, so the client never sends a request.
    client = AsyncKlingClient(
        base_url="http://127.0.0.1:9", access_key="ak", secret_key="sk-0123456789"
    )
    engine = EngineThread(Monitor(store=store, client=client), client=client)
    try:
        engine.start()
        assert sys.getswitchinterval() == pytest.approx(min(before, SWITCH_S), abs=_US)
        gate = writer_gate(store)
        with gate.answering():
            assert sys.getswitchinterval() == pytest.approx(ANSWER_SWITCH_S, abs=_US)
            with gate.answering():  # a second answer, nested: still short
                assert sys.getswitchinterval() == pytest.approx(
                    ANSWER_SWITCH_S, abs=_US
                )
            assert sys.getswitchinterval() == pytest.approx(ANSWER_SWITCH_S, abs=_US)
        assert sys.getswitchinterval() == pytest.approx(min(before, SWITCH_S), abs=_US)
        engine.stop()
        asyncio.run(engine.join())
        assert sys.getswitchinterval() == pytest.approx(before, abs=_US)
        with gate.answering():  # the engine gone, nothing changes it
            assert sys.getswitchinterval() == pytest.approx(before, abs=_US)
    finally:
        engine.stop()
        store.close()
