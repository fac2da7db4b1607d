"""The accounts benchmark's setup and table: what it configures and what it checks."""

from __future__ import annotations

from bench.accounts import ACCOUNTS, POOL, SLOTS, TASKS, markdown, requests, settings

from klingmon.policy import pool_of


def test_the_batch_is_one_pool_and_both_accounts_are_configured(tmp_path):
    batch = requests()
    assert len(batch) == TASKS
    assert {pool_of(r.task_path, r.payload).label for r in batch} == {POOL}
    configured = settings(tmp_path / "b.db")
    assert [a.name for a in configured.accounts] == list(ACCOUNTS)
    assert configured.engine.account_slots == tuple((a, SLOTS) for a in ACCOUNTS)
    assert not configured.has_credentials  # the named accounts' keys only


def _row(name: str, makespan: float, placed: dict[str, int]) -> dict[str, object]:
    return {
        "contender": name,
        "figures": {
            "makespan_s": makespan,
            "ideal_makespan_s": makespan * 0.98,
            "answers_1303": 0,
            "tasks_per_account": placed,
            "max_in_flight": {a: SLOTS if placed[a] else 0 for a in ACCOUNTS},
            "external_ids_on_both_accounts": 0,
            "finished": True,
            "why_not": None,
        },
    }


def test_the_table_checks_the_ratio_against_its_target():
    rows = [
        _row("one account", 16_000.0, {"a": 400, "b": 0}),
        _row("two accounts", 8_100.0, {"a": 200, "b": 200}),
    ]
    table = markdown(rows)
    assert "| 50.6 % | yes |" in table
    slow = [rows[0], _row("two accounts", 9_600.0, {"a": 200, "b": 200})]
    assert "| 60.0 % | **no** |" in markdown(slow)
