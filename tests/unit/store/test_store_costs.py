"""One cost record per task, from either generation, where observed values land."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from klingmon.api import Task, snapshot_of
from klingmon.domain import Cost, TaskStatus
from klingmon.store import NewTask, Observation, Store

if TYPE_CHECKING:
    from pathlib import Path

T0 = 1_780_000_000_000


def _store(tmp_path: Path, n: int = 2) -> Store:
    store = Store.open(str(tmp_path / "c.db"))
    tasks = [
        NewTask(
            endpoint="/v1/videos/text2video",
            body={"prompt": "p"},
            external_task_id=f"km-{i}",
            task=snapshot_of(
                Task(
                    task_id=f"kt-{i}",
                    task_status="submitted",
                    created_at=T0,
                    updated_at=T0,
                    task_info={"external_task_id": f"km-{i}"},
                )
            ),
        )
        for i in range(n)
    ]
    store.tasks.create_batch("costs", tasks, T0)
    return store


def test_legacy_deductions_land_in_the_cost_record(tmp_path: Path):
    store = _store(tmp_path)
    legacy = snapshot_of(
        {
            "task_id": "kt-0",
            "task_status": "succeed",
            "updated_at": T0 + 10,
            "final_unit_deduction": "3",
            "final_balance_deduction": "1.25",
            "task_result": {"videos": [{"id": "v", "url": "https://x/v.mp4"}]},
        }
    )
    store.watch.apply([Observation(1, legacy, "poll", T0 + 20)], T0 + 20)
    row = store.tasks.task("kt-0")
    assert row is not None
    assert row.cost == Cost(units=3.0, cash=1.25)
    report = store.reports.report(row.batch_id)
    assert report.units == 3.0
    assert report.cash == {"": 1.25}
    store.close()


def test_new_billing_lands_and_a_later_answer_without_billing_keeps_it(
    tmp_path: Path,
):
    store = _store(tmp_path)
    billed = snapshot_of(
        {
            "id": "kt-1",
            "status": "succeeded",
            "update_time": T0 + 10,
            "outputs": [{"type": "image", "url": "https://x/i.png"}],
            "billing": [
                {"charge_type": "unit", "amount": "0.5", "package_type": "image"},
                {
                    "charge_type": "cash",
                    "amount": "0.2",
                    "currency": "CNY",
                    "cash_type": "test_balance",
                    "list_price": "0.3",
                },
            ],
        }
    )
    store.watch.apply([Observation(2, billed, "poll", T0 + 20)], T0 + 20)
    again = snapshot_of({"id": "kt-1", "status": "succeeded", "update_time": T0 + 10})
    store.watch.apply([Observation(2, again, "poll", T0 + 30)], T0 + 30)
    row = store.tasks.task("kt-1")
    assert row is not None
    assert row.status is TaskStatus.SUCCEED
    assert row.cost == Cost(
        units=0.5,
        cash=0.2,
        currency="CNY",
        package_type="image",
        list_price=0.3,
        cash_type="test_balance",
    )
    summary = store.reports.batch_summaries()[row.batch_id]
    assert summary.units == pytest.approx(0.5)
    assert summary.cash == {"CNY": pytest.approx(0.2)}
    store.close()


def test_a_task_without_charges_has_no_cost_record(tmp_path: Path):
    store = _store(tmp_path, n=1)
    row = store.tasks.task("kt-0")
    assert row is not None
    assert row.cost is None
    assert store.reports.report(row.batch_id).cash == {}
    store.close()


def test_legacy_audios_are_owed_as_files(tmp_path: Path):
    """``task_result.audios`` (legacy audio tasks): the mp3 and the wav, two files."""
    store = _store(tmp_path, n=1)
    legacy = snapshot_of(
        {
            "task_id": "kt-0",
            "task_status": "succeed",
            "updated_at": T0 + 10,
            "task_result": {
                "videos": [],
                "images": [],
                "audios": [
                    {
                        "id": "a1",
                        "url_mp3": "https://x/a.mp3",
                        "url_wav": "https://x/a.wav",
                    }
                ],
            },
        }
    )
    store.watch.apply([Observation(1, legacy, "poll", T0 + 20)], T0 + 20)
    owed = sorted((d.kind, d.idx, d.url) for d in store.downloads.download_rows(None))
    assert owed == [
        ("audio", 0, "https://x/a.mp3"),
        ("audio", 1, "https://x/a.wav"),
    ]
    store.close()
