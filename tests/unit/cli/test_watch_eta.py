"""The live view's ETA leaves out tasks past their deadline."""

from __future__ import annotations

from klingmon.api import AsyncKlingClient
from klingmon.cli._watch import _eta
from klingmon.engine import Monitor
from klingmon.store import NewTask, Store


async def test_no_eta_once_every_waiting_task_is_past_its_deadline(tmp_path):
    """Two queued tasks have an ETA; flagged past their deadline, they have none."""
    store = Store.open(str(tmp_path / "k.db"))
    # A client that is never used: the ETA reads only the store and the stats.
    client = AsyncKlingClient(api_key="unused", base_url="http://127.0.0.1:1")
    monitor = Monitor(store=store, client=client)
    try:
        tasks = [NewTask("/v1/videos/text2video", {}, prompt=f"p{i}") for i in range(2)]
        batch = store.tasks.create_batch("b", tasks, 0)
        assert _eta(monitor, store.tasks.tasks(batch.id)) is not None
        for row in store.tasks.tasks(batch.id):
            store.watch.flag(row.id, "watch_timeout", 1, {"deadline_ms": 0})
        assert _eta(monitor, store.tasks.tasks(batch.id)) is None
    finally:
        await monitor.aclose()
