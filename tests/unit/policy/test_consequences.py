"""What a status change implies: one pure answer whatever recorded it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from klingmon.domain import (
    IN_FLIGHT,
    OUTBOX_KINDS,
    TERMINAL,
    EventKind,
    Source,
    TaskStatus,
)
from klingmon.policy import Phase, Transition, consequences

times = st.one_of(st.none(), st.integers(min_value=0, max_value=2**41))
transitions = st.builds(
    Transition,
    old=st.one_of(st.none(), st.sampled_from(TaskStatus)),
    new=st.sampled_from(TaskStatus),
    source=st.sampled_from(Source),
    trusted=st.booleans(),
    kind=st.sampled_from(EventKind),
    at_ms=times,
    created_ms=times,
    phase_started_ms=times,
)


@given(transitions)
def test_the_source_never_matters(t):
    """A callback's change implies what a poll's does: the bug was a path that
    forgot one of these."""
    answers = {
        consequences(
            Transition(
                old=t.old,
                new=t.new,
                source=source,
                trusted=t.trusted,
                kind=t.kind,
                at_ms=t.at_ms,
                created_ms=t.created_ms,
                phase_started_ms=t.phase_started_ms,
            )
        )
        for source in Source
    }
    assert len(answers) == 1


@given(transitions)
def test_slots_free_exactly_when_an_in_flight_task_ends(t):
    c = consequences(t)
    assert c.frees_slot == (t.new in TERMINAL and (t.old is None or t.old in IN_FLIGHT))


@given(transitions)
def test_files_are_owed_only_for_a_vouched_success(t):
    c = consequences(t)
    assert c.owes_files == (t.new is TaskStatus.SUCCEED and t.trusted)
    assert c.heard == (t.kind in OUTBOX_KINDS)


@given(transitions)
def test_a_sample_has_a_phase_the_change_ended_and_known_ends(t):
    sample = consequences(t).sample
    if sample is None:
        return
    assert t.old is not None
    assert t.at_ms
    if sample.phase is Phase.SUBMITTED:
        assert t.new is TaskStatus.PROCESSING
        assert t.created_ms
        assert sample.seconds == (t.at_ms - t.created_ms) / 1000
    else:
        assert (t.old, t.new) == (TaskStatus.PROCESSING, TaskStatus.SUCCEED)
        assert t.phase_started_ms
        assert sample.seconds > 0


@given(
    created=st.integers(min_value=1, max_value=2**40),
    queued=st.integers(min_value=0, max_value=10**7),
    ran=st.integers(min_value=1, max_value=10**7),
)
def test_both_phases_are_learned_along_a_normal_life(created, queued, ran):
    start = created + queued
    to_processing = consequences(
        Transition(
            old=TaskStatus.SUBMITTED,
            new=TaskStatus.PROCESSING,
            source=Source.CALLBACK,
            at_ms=start,
            created_ms=created,
        )
    )
    done = consequences(
        Transition(
            old=TaskStatus.PROCESSING,
            new=TaskStatus.SUCCEED,
            source=Source.CALLBACK,
            at_ms=start + ran,
            created_ms=created,
            phase_started_ms=start,
        )
    )
    assert to_processing.sample is not None
    assert to_processing.sample.phase is Phase.SUBMITTED
    assert to_processing.sample.seconds == queued / 1000
    assert not to_processing.frees_slot
    assert done.sample is not None
    assert done.sample.phase is Phase.PROCESSING
    assert done.sample.seconds == ran / 1000
    assert done.frees_slot
    assert done.owes_files
