"""Hypothesis strategies shared by the policy tests (a plain module, not a conftest)."""

from __future__ import annotations

from hypothesis import strategies as st

from klingmon.policy import Distribution, Phase, SchedulePolicy

phases = st.sampled_from(list(Phase))
modes = st.sampled_from(["", "std", "pro", "other"])
durations = st.sampled_from(["", "5", "10", "15", "3", "n/a"])

#: Seconds, spread over every scale from sub-second to days.
seconds = st.one_of(
    st.floats(min_value=-2.0, max_value=5.0).map(lambda x: 10.0**x),
    st.floats(min_value=0.0, max_value=100_000.0, allow_nan=False),
)


@st.composite
def distributions(draw: st.DrawFn) -> Distribution:
    dist = Distribution.prior(draw(phases), draw(modes), draw(durations))
    for value in draw(st.lists(seconds, max_size=300)):
        dist.add(value)
    return dist


@st.composite
def schedule_policies(draw: st.DrawFn) -> SchedulePolicy:
    min_interval = draw(st.floats(min_value=0.1, max_value=30.0))
    target_lag = draw(st.floats(min_value=min_interval, max_value=120.0))
    max_interval = draw(st.floats(min_value=target_lag, max_value=3600.0))
    return SchedulePolicy(
        min_interval=min_interval,
        target_lag=target_lag,
        max_interval=max_interval,
        jitter=draw(st.floats(min_value=0.0, max_value=0.5)),
        safety_interval=draw(st.floats(min_value=min_interval, max_value=3600.0)),
        likely=draw(st.floats(min_value=0.001, max_value=0.5)),
        request_cost=draw(st.floats(min_value=0.01, max_value=100.0)),
        done_lag=draw(st.floats(min_value=0.1, max_value=600.0)),
    )
