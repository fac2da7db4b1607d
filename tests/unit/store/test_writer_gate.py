"""The write gate of one process: the engine's writes let a callback's commit first."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

from klingmon.store import Store, WriterGate, writer_gate
from klingmon.store._dialect import dialect_named

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

_LONG = 60.0  # a bound nobody reaches: the test fails on a join timeout instead


def _until(done: Callable[[], bool]) -> None:
    """Wait for another thread to reach a state it always reaches."""
    deadline = time.monotonic() + _LONG
    while not done():
        assert time.monotonic() < deadline, "the other thread never got there"
        time.sleep(0.001)


def _writer(
    gate: WriterGate, order: list[str], name: str, *, background: bool
) -> threading.Thread:
    def run() -> None:
        with gate.background() if background else contextlib.nullcontext(), gate.hold():
            order.append(name)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_waiting_foreground_writer_enters_before_a_background_one():
    """Both wait for the holder; the one someone waits for goes in first."""
    gate = WriterGate(yield_s=_LONG)
    order: list[str] = []
    with gate.hold():
        behind = _writer(gate, order, "engine", background=True)
        _until(lambda: gate.backlog == 1)
        ahead = _writer(gate, order, "receiver", background=False)
        _until(lambda: gate.backlog == 2)
        assert order == []
    for thread in (ahead, behind):
        thread.join(_LONG)
    assert order == ["receiver", "engine"]


def test_background_writes_hold_back_while_an_answer_is_given():
    """An answer being given keeps the engine out of a free gate until it is given."""
    gate = WriterGate(yield_s=_LONG)
    order: list[str] = []
    with gate.answering():
        engine = _writer(gate, order, "engine", background=True)
        _until(lambda: gate.backlog == 1)
        order.append("answered")
    engine.join(_LONG)
    assert order == ["answered", "engine"]


def test_a_long_answer_delays_the_engine_by_the_yield_bound_only():
    """A flood of callbacks slows background writers down; it never stops them."""
    gate = WriterGate(yield_s=0.02)
    order: list[str] = []
    with gate.answering():
        engine = _writer(gate, order, "engine", background=True)
        engine.join(_LONG)
        assert order == ["engine"]  # while the answer is still being given


def test_foreground_writers_never_wait_for_answers():
    """Only background callers hold back: a receiver's own commit goes straight in."""
    gate = WriterGate(yield_s=_LONG)
    order: list[str] = []
    with gate.answering():
        _writer(gate, order, "receiver", background=False).join(_LONG)
    assert order == ["receiver"]


def test_postgresql_writers_run_side_by_side():
    """No gate on PostgreSQL: a writer enters while another holds it."""
    gate = dialect_named("postgresql").writer_gate()
    order: list[str] = []
    with gate.hold():
        _writer(gate, order, "second", background=True).join(_LONG)
    assert order == ["second"]


def test_the_store_s_background_writes_wait_for_its_answers(tmp_path: Path):
    """Background calls write only once the answer was given (or the yield bound
    passed): the engine's writes beside the receiver in serve."""
    with Store.open(str(tmp_path / "k.db")) as store:
        gate = writer_gate(store)
        gate.yield_s = _LONG  # the bound is not under test here
        done = threading.Event()

        def engine_write() -> None:
            with gate.background():
                store.meta.set("k", "v")
            done.set()

        with gate.answering():
            thread = threading.Thread(target=engine_write, daemon=True)
            thread.start()
            _until(lambda: gate.backlog == 1)
            store.meta.set("receiver", "first")  # a foreground write goes in
            assert not done.is_set()
        thread.join(_LONG)
        assert done.is_set()
        assert store.meta.get("k") == "v"


def test_answers_in_a_row_or_at_once_enter_and_leave_once_each():
    """``while_answering``: entered as the first answer starts, left as the last
    ends, however the answers of two threads overlap; never after it is stopped."""
    gate = WriterGate()
    seen: list[str] = []
    stop = gate.while_answering(
        lambda: seen.append("enter"), lambda: seen.append("leave")
    )
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gate.answering():
            inside.set()
            release.wait(_LONG)

    with gate.answering():
        thread = threading.Thread(target=other, daemon=True)
        thread.start()
        assert inside.wait(_LONG)
    assert seen == ["enter"]  # the other thread still answers
    release.set()
    thread.join(_LONG)
    assert seen == ["enter", "leave"]
    with gate.answering():
        pass
    assert seen == ["enter", "leave", "enter", "leave"]
    stop()
    with gate.answering():
        pass
    assert seen == ["enter", "leave", "enter", "leave"]
