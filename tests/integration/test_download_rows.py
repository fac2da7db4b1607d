"""The downloads table's contract on SQLite and PostgreSQL: owed, claimed, done."""

from __future__ import annotations

from typing import TYPE_CHECKING

from test_store_contract import T0, backend, store, submitted, wire

from klingmon.store import RETENTION_MS, Observation

if TYPE_CHECKING:
    from klingmon.store import Store

__all__ = ["backend", "store"]  # fixtures shared with the store contract

RESULT = {
    "videos": [
        {"id": "v1", "url": "https://cdn.klingai.com/a/1.mp4", "duration": "5"},
        {"id": "v2", "url": "https://cdn.klingai.com/a/2.mp4", "duration": "5"},
    ],
    "images": [{"index": 0, "url": "https://cdn.klingai.com/a/0.png"}],
}


def _succeed(store: Store, task_id: int, source: str, at: int = T0 + 5000) -> None:
    task = wire(f"k{task_id}", "succeed", at, created_at=T0, task_result=RESULT)
    store.watch.apply([Observation(task_id, task, source, at)], at)


def test_poll_success_owes_every_file(store: Store) -> None:
    """A success seen by a poll creates one pending row per video and image."""
    (tid,) = submitted(store)
    _succeed(store, tid, "poll")
    rows = store.downloads.download_rows(task_id=tid)
    assert [(r.kind, r.idx, r.status) for r in rows] == [
        ("video", 0, "pending"),
        ("video", 1, "pending"),
        ("image", 0, "pending"),
    ]
    assert {r.expires_ms for r in rows} == {T0 + RETENTION_MS}
    _succeed(store, tid, "sweep", T0 + 6000)  # seen again: nothing doubles
    assert len(store.downloads.download_rows(task_id=tid)) == 3


def test_unconfirmed_callback_urls_are_never_owed(store: Store) -> None:
    """A success heard only from a callback owes nothing until it is confirmed."""
    (tid,) = submitted(store)
    _succeed(store, tid, "callback")
    assert store.downloads.download_rows(task_id=tid) == []
    assert store.downloads.ensure_downloads(T0 + 7000) == 0  # the backfill skips it too
    assert store.downloads.confirm_downloads(tid, T0 + 8000) == 3
    assert len(store.downloads.download_rows(task_id=tid)) == 3


def test_confirmed_callback_owes_files_in_the_same_transaction(store: Store) -> None:
    """A callback the receiver trusts (signed) owes its files as it is applied."""
    (tid,) = submitted(store)
    task = wire(f"k{tid}", "succeed", T0 + 5000, created_at=T0, task_result=RESULT)
    obs = Observation(tid, task, "callback", T0 + 5000, confirmed=True)
    store.watch.apply([obs], T0 + 5000)
    assert len(store.downloads.download_rows(task_id=tid)) == 3


def test_claims_lease_and_finish(store: Store) -> None:
    """Two workers never hold one file; dest, done, failed and requeue move the row."""
    tid, other = submitted(store, 2)
    _succeed(store, tid, "poll")
    _succeed(store, other, "poll")
    a = store.downloads.claim_downloads("a", T0, 60_000, 4)
    b = store.downloads.claim_downloads("b", T0, 60_000, 10)
    assert len(a) == 4
    assert len(b) == 2
    assert not {r.id for r in a} & {r.id for r in b}
    assert {r.status for r in a} == {"downloading"}
    first = a[0]
    # Each fetch records its own place until the file is done; then it stays.
    assert store.downloads.set_download_dest(first.id, "/y/other.mp4") == "/y/other.mp4"
    assert store.downloads.set_download_dest(first.id, "/x/1.mp4") == "/x/1.mp4"
    store.downloads.download_done(first.id, T0 + 1, size=10, sha256="ab" * 32)
    assert store.downloads.set_download_dest(first.id, "/z/late.mp4") == "/x/1.mp4"
    store.downloads.download_failed(a[1].id, "boom")  # an attempt, still claimed
    store.downloads.download_failed(a[2].id, "gone", status="failed")
    store.fleet.release("a")
    again = store.downloads.claim_downloads("c", T0 + 2, 60_000, 10)
    assert {r.id for r in again} == {a[1].id, a[3].id}
    retried = store.downloads.claim_downloads(
        "d", T0 + 3, 60_000, 10, retry_failed=True
    )
    assert [r.id for r in retried] == [a[2].id]
    store.downloads.requeue_downloads([first.id])
    (row,) = [r for r in store.downloads.download_rows() if r.id == first.id]
    # Owed again, it keeps the hash a file found in its place must still have.
    assert (row.status, row.sha256, row.dest) == ("pending", "ab" * 32, "/x/1.mp4")
    counts = store.downloads.download_counts(now_ms=T0, within_ms=RETENTION_MS)
    assert counts["expiring"] == 6
    assert store.downloads.next_download_ms() == 0


def test_expired_lease_is_taken_over(store: Store) -> None:
    """A dead worker's claim on a file lapses with its lease."""
    (tid,) = submitted(store)
    _succeed(store, tid, "poll")
    assert len(store.downloads.claim_downloads("dead", T0, 1000, 10)) == 3
    assert store.downloads.claim_downloads("live", T0 + 500, 1000, 10) == []
    assert len(store.downloads.claim_downloads("live", T0 + 1000, 1000, 10)) == 3
    assert "live" in store.fleet.lease_owners()
