"""Hybrid reconciliation across processes: the engine reads the receiver's note
(``callback_flow``)."""

from __future__ import annotations

from engine_support import virtual_monitor

from klingmon._clock import to_ms
from klingmon.sim import SimConfig, Simulator
from klingmon.testing import VirtualClock

ENDPOINT = "/v1/videos/text2video"


async def test_engine_sees_callbacks_noted_by_another_process(tmp_path):
    """A recent note in meta means callbacks flow; an old one, or none, does not."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(), clock=clock)
    monitor = virtual_monitor(sim, tmp_path / "h.db", clock)
    engine = monitor.engine()
    assert not engine._callbacks_active(ENDPOINT)
    monitor.store.flow.note_callbacks([ENDPOINT], to_ms(clock.now()))
    clock.advance(engine.settings.schedule.min_interval)  # the note is re-read
    assert engine._callbacks_active(ENDPOINT)
    clock.advance(engine.settings.schedule.safety_interval + 1)
    assert not engine._callbacks_active(ENDPOINT)
    await monitor.aclose()


async def test_in_process_note_counts_at_once(tmp_path):
    """note_callback (the same-process receiver) turns the safety net on at once."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(), clock=clock)
    monitor = virtual_monitor(sim, tmp_path / "h.db", clock)
    engine = monitor.engine()
    engine.note_callback(ENDPOINT)
    assert engine._callbacks_active(ENDPOINT)
    await monitor.aclose()


async def test_only_a_finish_wakes_an_engine_without_hooks(tmp_path):
    """ "processing" news needs no round (a dozen queries); a finish frees a slot."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(), clock=clock)
    monitor = virtual_monitor(sim, tmp_path / "h.db", clock)
    engine = monitor.engine()
    engine.note_callback(ENDPOINT)
    assert not engine._wake.is_set()
    engine.note_callback(ENDPOINT, finish=True)
    assert engine._wake.is_set()
    await monitor.aclose()


async def test_any_callback_wakes_an_engine_with_hooks(tmp_path):
    """Hooks want every status change at once, "processing" included."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(), clock=clock)
    monitor = virtual_monitor(sim, tmp_path / "h.db", clock)
    monitor.on_status(lambda _event: None)
    engine = monitor.engine()
    engine.note_callback(ENDPOINT)
    assert engine._wake.is_set()
    await monitor.aclose()
