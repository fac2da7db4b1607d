"""``SimConfig.draws``: a task's life in creation order, or its own by prompt."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from simhelp import config, create

from klingmon.sim import Faults

if TYPE_CHECKING:
    from klingmon.testing import VirtualClock

PROMPTS = [f"a lighthouse at dusk, take {i}" for i in range(8)]
DAY = 86_400.0


async def _lives(
    connect: Any, clock: VirtualClock, prompts: list[str], **overrides: Any
) -> dict[str, list[tuple[str, int]]]:
    """Each prompt's transitions, as ms after its create (Kling's own record)."""
    sim, client = await connect(config(slots=len(prompts), **overrides))
    ids = {}
    for prompt in prompts:
        ids[prompt] = (await create(client, prompt=prompt))["task_id"]
    clock.advance(DAY)
    tasks = sim.counters()["tasks"]
    lives = {}
    for prompt, task_id in ids.items():
        transitions = tasks[task_id]["transitions"]
        start = transitions[0][1]
        lives[prompt] = [(status, at - start) for status, at in transitions]
    return lives


@pytest.mark.parametrize("draws", ["order", "prompt"])
async def test_same_order_same_lives(connect, clock, draws):
    """Either way, the same bodies sent in the same order live alike (per seed)."""
    first = await _lives(connect, clock, PROMPTS, draws=draws)
    again = await _lives(connect, clock, PROMPTS, draws=draws)
    assert first == again


async def test_prompt_draws_follow_the_task_not_the_order(connect, clock):
    """``prompt``: sent in reverse, every task still lives exactly as before,
    failures included; ``order`` hands the lives out by position instead."""
    faults = Faults(fail_rate=0.5)
    forward = await _lives(connect, clock, PROMPTS, draws="prompt", faults=faults)
    backward = await _lives(
        connect, clock, PROMPTS[::-1], draws="prompt", faults=faults
    )
    assert forward == backward
    assert {s for life in forward.values() for s, _ in life} >= {"succeed", "failed"}
    by_order = await _lives(connect, clock, PROMPTS, faults=faults)
    by_order_back = await _lives(connect, clock, PROMPTS[::-1], faults=faults)
    assert by_order != by_order_back


async def test_one_draws_seed_gives_every_account_the_same_lives(connect, clock):
    """Two accounts (seeds of their own, for distinct ids) sharing ``draws_seed``
    give a prompt the same life; without it, each seed draws its own."""
    one = await _lives(connect, clock, PROMPTS, draws="prompt", seed=1, draws_seed=7)
    two = await _lives(connect, clock, PROMPTS, draws="prompt", seed=2, draws_seed=7)
    assert one == two
    apart = await _lives(connect, clock, PROMPTS, draws="prompt", seed=2)
    assert apart != one
