"""The store's pure helpers: percentiles, wire mapping, row keys."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klingmon.api import snapshot
from klingmon.api._models import Task
from klingmon.domain import TaskStatus
from klingmon.store import NewTask, Observation
from klingmon.store._convert import (
    KLING_SKEW_MS,
    kling_ms,
    observed_values,
    status_values,
)
from klingmon.store._report import percentile
from klingmon.store._writes import Pending, apply_one, changes_nothing


def test_percentile_interpolates_like_percentile_cont():
    """p50 and p95 interpolate between the closest ranks."""
    assert percentile([], 0.5) is None
    assert percentile([7], 0.95) == 7
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([1, 2, 3, 4], 0.95) == pytest.approx(3.85)


@given(st.lists(st.integers(-(10**12), 10**12), min_size=1), st.floats(0, 1))
def test_percentile_stays_within_the_data(values, q):
    """A percentile never leaves [min, max]."""
    got = percentile(sorted(values), q)
    assert got is not None
    assert min(values) <= got <= max(values)


def test_observed_values_keep_only_what_kling_said():
    """Missing fields do not overwrite stored ones; units parse; bad times drop."""
    task = Task.model_validate(
        {
            "task_id": "k",
            "task_status": "succeed",
            "updated_at": 2**70,
            "created_at": 5,
            "final_unit_deduction": "1.25",
            "task_result": {"videos": [{"url": "https://x/v.mp4"}]},
        }
    )
    values = observed_values(snapshot(task), 1_000)
    assert values["kling_created_ms"] == 5
    assert "kling_updated_ms" not in values
    assert "status_msg" not in values
    assert values["units"] == 1.25
    assert values["result"]["videos"][0]["url"] == "https://x/v.mp4"
    bare = observed_values(snapshot(Task(task_id="k", task_status="processing")), 1_000)
    assert bare == {"task_id": "k"}
    odd = Task(task_id="k", task_status="failed", final_unit_deduction="n/a")
    assert "units" not in observed_values(snapshot(odd), 1_000)
    assert kling_ms(-1, 1_000) is None
    assert kling_ms(10**13, 1_000) == 1_000 + KLING_SKEW_MS  # no time from the future


def test_status_values_mark_milestones_once():
    """submitted/processing/finished times are set when first reached."""
    row = {"submitted_ms": None, "processing_ms": None}
    done = status_values(row, TaskStatus.SUCCEED, "poll", 9)
    assert done["submitted_ms"] == 9
    assert "processing_ms" not in done
    assert done["finished_ms"] == 9
    assert done["next_poll_ms"] is None
    assert done["learned_via"] == "poll"
    local = status_values(
        {"submitted_ms": 1, "processing_ms": None}, TaskStatus.QUEUED, "local", 3
    )
    assert local == {"status": "queued", "phase_ms": 3}


def test_new_task_defaults():
    """A NewTask needs only an endpoint and a body."""
    new = NewTask("/v1/videos/text2video", {"prompt": "x"})
    assert (new.model_name, new.task, new.external_task_id) == (None, None, None)


_WIRE = ["submitted", "processing", "succeed", "failed", "a-status-kling-adds"]


@settings(max_examples=400)
@given(
    # Mostly running tasks told their own status again: the quiet path's cases.
    old=st.sampled_from(
        [TaskStatus.SUBMITTED, TaskStatus.PROCESSING, *list(TaskStatus)]
    ),
    said=st.one_of(st.none(), st.none(), st.sampled_from(_WIRE)),
    task_id=st.sampled_from([None, "k1", "k1"]),
    stored_ms=st.one_of(st.none(), st.integers(0, 2000)),
    updated_ms=st.one_of(st.none(), st.integers(0, 2000)),
    source=st.sampled_from(["poll", "sweep", "callback"]),
    confirmed=st.booleans(),
)
def test_an_observation_that_changes_nothing_is_only_a_poll_to_apply_one(
    *, old, said, task_id, stored_ms, updated_ms, source, confirmed
):
    """``changes_nothing`` (the store's quiet path) never skips what ``apply_one``
    would write: where it says so, judging the observation leaves no event, no
    update, no owed file, at most a poll count."""
    status = old.value if said is None else said  # often the stored status again
    task = snapshot(
        Task.model_validate(
            {"task_id": "k1", "task_status": status, "updated_at": updated_ms}
        )
    )
    obs = Observation(7, task, source, 5000, confirmed=confirmed)
    row = {
        "id": 7,
        "status": old.value,
        "task_id": task_id,
        "kling_updated_ms": stored_ms,
        "polls": 3,
        "last_error": None,
    }
    if not changes_nothing(row, obs, 5000):
        return
    pending, polled = Pending(), []
    assert apply_one(dict(row), obs, 5000, pending, polled) is None
    assert (pending.events, pending.updates, pending.owed) == ([], {}, {})
    assert polled == ([7] if source in ("poll", "sweep") else [])
