"""The store's contract, run against SQLite (a file) and PostgreSQL (a fresh schema)."""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from klingmon.api import snapshot
from klingmon.api._models import Task
from klingmon.domain import Snapshot, TaskStatus
from klingmon.errors import NameTakenError, StoreError
from klingmon.store import NewTask, Observation, Store
from klingmon.store._lease import CLAIM_CHUNK
from klingmon.store._schema import metadata

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PG_URL = os.environ.get(
    "KLINGMON_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Read at import: the suite's autouse fixture clears KLINGMON_* before each test runs.
REQUIRE_SERVICES = os.environ.get("KLINGMON_REQUIRE_SERVICES") == "1"
T0 = 1_700_000_000_000
EP = "/v1/videos/text2video"


def _pg_engine() -> sa.Engine:
    """An engine on the test server, or a skip (a failure if services are required)."""
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL at KLINGMON_TEST_PG_URL does not answer: {exc.orig}"
        if REQUIRE_SERVICES:
            pytest.fail(reason)
        pytest.skip(reason)
    return engine


class Backend:
    """Where a test's database lives, so that it can be reopened or tampered with."""

    def __init__(self, url: str, admin: sa.Engine | None = None) -> None:
        self.url = url
        self.admin = admin

    def open(self) -> Store:
        return Store.open(self.url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend(str(tmp_path / "klingmon.db"))
        return
    admin = _pg_engine()
    schema = f"km_test_{os.getpid()}_{secrets.token_hex(4)}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield Backend(url.render_as_string(hide_password=False), admin)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    with backend.open() as s:
        yield s


def wire(
    task_id: str, status: str, updated: int | None = None, **fields: Any
) -> Snapshot:
    return snapshot(
        Task.model_validate(
            {"task_id": task_id, "task_status": status, "updated_at": updated, **fields}
        )
    )


def new(n: int, **kw: Any) -> list[NewTask]:
    return [NewTask(EP, {"prompt": f"p{i}"}, prompt=f"p{i}", **kw) for i in range(n)]


def submitted(store: Store, n: int = 1) -> list[int]:
    """n tasks taken through submission to ``submitted`` (Kling ids k<local id>)."""
    store.tasks.create_batch(None, new(n), T0)
    ids = []
    for row in store.tasks.claim_queued("w", T0, 60_000, n):
        store.tasks.mark_submitting(row.id, T0)
        store.tasks.mark_submitted(
            row.id, wire(f"k{row.id}", "submitted", T0), T0, T0 + 1000
        )
        ids.append(row.id)
    return ids


# SQLite's expression indexes (``_schema.DURATION_INDEXES``) cannot be reflected; the
# report tests check them by their query plans instead.
@pytest.mark.filterwarnings(
    "ignore:Skipped unsupported reflection of expression-based index"
    ":sqlalchemy.exc.SAWarning"
)
def test_migrations_create_the_declared_schema(store: Store):
    """Alembic's head matches the declared tables: autogenerate finds no difference."""
    with store._engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []


def test_create_batch_stores_every_task_with_unique_external_ids(store: Store):
    """A batch's tasks are queued with distinct km-<batch>-<seq>-<hex> external ids."""
    batch = store.tasks.create_batch("first", new(50), T0, defaults={"mode": "std"})
    rows = store.tasks.tasks(batch.id)
    assert [r.seq for r in rows] == list(range(1, 51))
    assert {r.status for r in rows} == {TaskStatus.QUEUED}
    ids = [r.external_task_id for r in rows]
    assert len(set(ids)) == 50
    assert all(re.fullmatch(rf"km-{batch.id}-\d+-[0-9a-f]{{8}}", i) for i in ids)
    assert store.tasks.batch("first") == batch
    assert store.tasks.batch(batch.id) == batch
    assert store.tasks.batch(str(batch.id)) == batch
    assert store.tasks.batch("nope") is None
    assert batch.defaults == {"mode": "std"}


def test_create_batch_is_atomic(store: Store):
    """A failure mid-way (a duplicate external id) leaves neither batch nor tasks."""
    tasks = [
        NewTask(EP, {}, external_task_id="dup"),
        *new(3),
        NewTask(EP, {}, external_task_id="dup"),
    ]
    with pytest.raises(StoreError):
        store.tasks.create_batch("atomic", tasks, T0)
    assert store.tasks.batches() == []
    assert store.tasks.tasks() == []


def test_batch_names_are_generated_and_unique(store: Store):
    """No name gives b-YYYYmmdd-HHMMSS (suffixed if taken); a taken name is refused."""
    a = store.tasks.create_batch(None, new(1), T0)
    b = store.tasks.create_batch(None, new(1), T0)
    assert a.name == "b-20231114-221320"
    assert b.name == "b-20231114-221320-2"
    with pytest.raises(NameTakenError, match="already exists"):
        store.tasks.create_batch(a.name, new(1), T0)


def test_create_batch_handles_twenty_thousand_tasks(store: Store):
    """20,000 tasks go in with one executemany, in one transaction."""
    batch = store.tasks.create_batch("big", new(20_000), T0)
    assert store.tasks.count_by_status(batch.id) == {TaskStatus.QUEUED: 20_000}


def test_adopting_an_existing_task_keeps_kling_state(store: Store):
    """A NewTask carrying a Kling task starts with its id, status and times."""
    known = wire(
        "k-77",
        "processing",
        T0 - 5,
        created_at=T0 - 10,
        task_info={"external_task_id": "theirs"},
    )
    store.tasks.create_batch("adopt", [NewTask(EP, {}, task=known)], T0)
    row = store.tasks.task("k-77")
    assert row is not None
    assert row.status is TaskStatus.PROCESSING
    assert row.external_task_id == "theirs"
    assert row.kling_created_ms == T0 - 10
    assert row.next_poll_ms == T0
    assert store.tasks.task("theirs") == row
    assert store.tasks.task(row.id) == row
    assert store.watch.active(EP) == [row]


def test_claims_never_share_a_task_and_expired_leases_return(store: Store):
    """Two owners get disjoint tasks; an expired lease can be claimed again."""
    store.tasks.create_batch(None, new(5), T0)
    a = store.tasks.claim_queued("a", T0, 1000, 3)
    b = store.tasks.claim_queued("b", T0, 1000, 3)
    assert [r.id for r in a] == [1, 2, 3]
    assert [r.id for r in b] == [4, 5]
    assert all(r.lease_owner == "a" and r.lease_until_ms == T0 + 1000 for r in a)
    assert store.tasks.claim_queued("c", T0 + 999, 1000, 10) == []
    again = store.tasks.claim_queued("c", T0 + 1000, 1000, 10)
    assert [r.id for r in again] == [1, 2, 3, 4, 5]
    store.fleet.release("c")
    assert len(store.tasks.claim_queued("d", T0 + 1000, 1000, 10)) == 5


def test_concurrent_claims_get_disjoint_sets(backend: Backend, store: Store):
    """Claimers on their own connections, at the same instant, never overlap."""
    store.tasks.create_batch(None, new(200), T0)
    workers = 8
    got: dict[int, list[int]] = {}
    start = threading.Barrier(workers)
    stores = [backend.open() for _ in range(workers)]

    def claim(n: int) -> None:
        start.wait(timeout=10)
        mine: list[int] = []
        while batch := stores[n].tasks.claim_queued(f"w{n}", T0, 60_000, 7):
            mine += [r.id for r in batch]
        got[n] = mine

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for s in stores:
        s.close()
    claimed = [i for ids in got.values() for i in ids]
    assert len(got) == workers
    assert sorted(claimed) == list(range(1, 201))


def test_submission_is_written_ahead(store: Store):
    """The intent is committed before the POST; the answer frees the lease."""
    store.tasks.create_batch(None, new(1), T0)
    (row,) = store.tasks.claim_queued("w", T0, 60_000, 1)
    sub = store.tasks.mark_submitting(row.id, T0 + 1)
    assert sub.status is TaskStatus.SUBMITTING
    assert sub.submit_attempts == 1
    change = store.tasks.mark_submitted(
        row.id, wire("k1", "submitted", T0 + 2, created_at=T0 + 2), T0 + 3, T0 + 500
    )
    assert change is not None
    assert (change.old_status, change.new_status) == (
        TaskStatus.SUBMITTING,
        TaskStatus.SUBMITTED,
    )
    after = change.task
    assert after.task_id == "k1"
    assert after.lease_owner is None
    assert after.next_poll_ms == T0 + 500
    assert after.submitted_ms == T0 + 3
    assert after.learned_via == "submit"
    kinds = [
        (e.source, e.old_status, e.new_status) for e in store.outbox.events(row.id)
    ]
    assert kinds == [
        ("local", TaskStatus.QUEUED, TaskStatus.SUBMITTING),
        ("submit", TaskStatus.SUBMITTING, TaskStatus.SUBMITTED),
    ]


def test_requeue_and_not_before(store: Store):
    """A requeued task goes back to queued and is not claimable before its time."""
    store.tasks.create_batch(None, new(1), T0)
    (row,) = store.tasks.claim_queued("w", T0, 60_000, 1)
    store.tasks.mark_submitting(row.id, T0)
    store.tasks.requeue(row.id, T0 + 1, T0 + 5000, "1303 parallel limit")
    again = store.tasks.task(row.id)
    assert again is not None
    assert again.status is TaskStatus.QUEUED
    assert again.last_error == "1303 parallel limit"
    assert again.lease_owner is None
    assert store.tasks.claim_queued("w", T0 + 4999, 60_000, 1) == []
    assert store.watch.next_due_ms() == T0 + 5000
    (back,) = store.tasks.claim_queued("w", T0 + 5000, 60_000, 1)
    assert store.tasks.mark_submitting(back.id, T0 + 5000).submit_attempts == 2


def test_reject_is_final_with_an_event_and_outbox(store: Store):
    """A refused create ends rejected, with Kling's message, an event and outbox row."""
    store.tasks.create_batch(None, new(1), T0)
    store.tasks.mark_submitting(1, T0)
    change = store.tasks.reject(1, T0 + 1, "prompt violates policy", 1301)
    assert change.task.status is TaskStatus.REJECTED
    assert change.task.status_msg == "prompt violates policy"
    assert change.task.finished_ms == T0 + 1
    (item,) = [
        i
        for i in store.outbox.claim_outbox("o", T0 + 1, 1000, 10)
        if i.event.kind == "rejected"
    ]
    assert item.event.payload == {"message": "prompt violates policy", "code": 1301}
    with pytest.raises(StoreError):
        store.tasks.reject(1, T0 + 2, "again", None)


def test_polls_that_say_again_what_is_stored_are_counted_and_nothing_else(
    store: Store,
):
    """A round's unchanged answers (most of them) count as polls, write no event,
    and leave the changes of the same round in the order they were seen."""
    quiet, moving, other = submitted(store, 3)
    t = 2 * T0
    store.watch.apply(
        [
            Observation(i, wire(f"k{i}", "processing", T0 + 10), "poll", t)
            for i in (quiet, moving)
        ],
        t,
    )
    before = {i: [e.kind for e in store.outbox.events(i)] for i in (quiet, moving)}
    again = wire(f"k{quiet}", "processing", T0 + 10)
    changes = store.watch.apply(
        [
            Observation(other, wire(f"k{other}", "processing", T0 + 20), "sweep", t),
            Observation(quiet, again, "sweep", t),
            Observation(moving, wire(f"k{moving}", "succeed", T0 + 30), "sweep", t),
            Observation(quiet, again, "poll", t),
            Observation(quiet, again, "callback", t),
        ],
        t,
    )
    assert [(c.task.id, c.new_status) for c in changes] == [
        (other, TaskStatus.PROCESSING),
        (moving, TaskStatus.SUCCEED),
    ]
    row = store.tasks.task(quiet)
    assert row is not None
    assert (row.status, row.polls) == (TaskStatus.PROCESSING, 3)
    assert [e.kind for e in store.outbox.events(quiet)] == before[quiet]
    assert [e.kind for e in store.outbox.events(moving)] == [*before[moving], "status"]


def test_apply_follows_rank_rules(store: Store):
    """Ranks rise; duplicates leave no event; terminal is final; drift warns once."""
    (tid,) = submitted(store)
    t = 2 * T0
    # processing arrives, then an older "submitted" (out of order), then a duplicate.
    changes = store.watch.apply(
        [
            Observation(tid, wire("k1", "processing", T0 + 10), "callback", t),
            Observation(tid, wire("k1", "submitted", T0 + 5), "poll", t),
            Observation(tid, wire("k1", "processing", T0 + 10), "poll", t),
        ],
        t,
    )
    assert [(c.old_status, c.new_status) for c in changes] == [
        (TaskStatus.SUBMITTED, TaskStatus.PROCESSING)
    ]
    row = store.tasks.task(tid)
    assert row is not None
    assert row.learned_via == "callback"
    assert row.polls == 2
    assert row.processing_ms == t
    kinds = [e.kind for e in store.outbox.events(tid)]
    assert kinds == ["status", "status", "status", "stale"]
    # a newer processing update refreshes data quietly
    assert (
        store.watch.apply(
            [
                Observation(
                    tid,
                    wire("k1", "processing", T0 + 20, task_status_msg="50%"),
                    "poll",
                    t,
                )
            ],
            t,
        )
        == []
    )
    row = store.tasks.task(tid)
    assert row is not None
    assert (row.status_msg, row.kling_updated_ms) == ("50%", T0 + 20)
    # unknown status: one drift event, not one per poll
    for _ in range(3):
        assert (
            store.watch.apply(
                [Observation(tid, wire("k1", "paused", T0 + 30), "poll", t)], t
            )
            == []
        )
    assert [e.kind for e in store.outbox.events(tid)].count("drift") == 1
    # success is final
    done = store.watch.apply(
        [
            Observation(
                tid,
                wire(
                    "k1",
                    "succeed",
                    T0 + 40,
                    final_unit_deduction="2.5",
                    task_result={"videos": [{"id": "v", "url": "https://x/v.mp4"}]},
                ),
                "poll",
                t + 1,
            ),
            Observation(tid, wire("k1", "failed", T0 + 50), "callback", t + 1),
        ],
        t + 1,
    )
    assert [c.new_status for c in done] == [TaskStatus.SUCCEED]
    final = done[0].task
    assert final.units == 2.5
    assert final.finished_ms == t + 1
    assert final.next_poll_ms is None
    assert final.result is not None
    assert final.result["videos"][0]["url"] == "https://x/v.mp4"
    assert store.tasks.task(tid) == final
    assert store.outbox.events(tid)[-1].kind == "stale"


_BOOM_SQLITE = """
CREATE TRIGGER boom BEFORE UPDATE ON tasks WHEN NEW.status_msg = 'boom'
BEGIN SELECT RAISE(ABORT, 'boom'); END
"""
_BOOM_PG = [
    """CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'boom'; END $$""",
    """CREATE TRIGGER boom BEFORE UPDATE ON tasks FOR EACH ROW
    WHEN (NEW.status_msg = 'boom') EXECUTE FUNCTION boom()""",
]


def test_apply_is_one_transaction(store: Store):
    """When one observation cannot be written, none of the batch is."""
    a, b = submitted(store, 2)
    # A database trigger fails the second write: a real fault, not a mock.
    with store._engine.begin() as conn:
        for ddl in _BOOM_PG if store.dialect == "postgresql" else [_BOOM_SQLITE]:
            conn.exec_driver_sql(ddl)
    before = store.outbox.events()
    with pytest.raises(StoreError, match="boom"):
        store.watch.apply(
            [
                Observation(a, wire(f"k{a}", "processing", T0 + 1), "poll", T0),
                Observation(
                    b,
                    wire(f"k{b}", "processing", T0 + 1, task_status_msg="boom"),
                    "poll",
                    T0,
                ),
            ],
            T0 + 1,
        )
    assert store.outbox.events() == before
    assert {r.status for r in store.tasks.tasks()} == {TaskStatus.SUBMITTED}
    assert store.outbox.outbox_backlog() == len(before)


def test_impossible_kling_times_are_dropped(store: Store):
    """A timestamp no BIGINT can hold is ignored instead of failing the write."""
    (tid,) = submitted(store)
    (change,) = store.watch.apply(
        [Observation(tid, wire(f"k{tid}", "processing", 2**70), "poll", T0)], T0 + 1
    )
    assert change.task.kling_updated_ms == T0


def test_every_outbox_kind_event_has_exactly_one_outbox_row(store: Store):
    """Status, rejected, drift and flag events get one outbox row each; stale none."""
    (tid,) = submitted(store)
    store.watch.apply([Observation(tid, wire("k1", "weird", 1), "poll", T0)], T0)
    store.watch.apply([Observation(tid, wire("k1", "processing", 2), "poll", T0)], T0)
    store.watch.apply([Observation(tid, wire("k1", "submitted", 1), "poll", T0)], T0)
    store.watch.flag(tid, "stuck", T0, {"phase": "processing"})
    items = store.outbox.claim_outbox("o", T0, 1000, 100)
    expected = [e.id for e in store.outbox.events() if e.kind != "stale"]
    assert sorted(i.event.id for i in items) == expected
    assert store.outbox.outbox_backlog() == len(expected)


def test_outbox_claim_deliver_and_fail(store: Store):
    """Items are leased once, retried at the time a failure asks for, then done."""
    submitted(store, 2)  # two tasks x two status events = four items
    first = store.outbox.claim_outbox("a", T0, 60_000, 3)
    second = store.outbox.claim_outbox("b", T0, 1000, 3)
    assert len(first) == 3
    assert len(second) == 1
    assert [i.event.id for i in first + second] == [1, 2, 3, 4]
    store.outbox.delivered([i.id for i in first[:2]], T0 + 1)
    store.outbox.failed(first[2].id, T0 + 1, "hook returned 500", T0 + 10_000)
    assert store.outbox.outbox_backlog() == 2
    assert store.outbox.claim_outbox("c", T0 + 999, 1000, 10) == []
    (expired,) = store.outbox.claim_outbox("c", T0 + 1000, 60_000, 10)
    assert expired.id == second[0].id
    (retry,) = store.outbox.claim_outbox("d", T0 + 10_000, 1000, 10)
    assert (retry.id, retry.attempts) == (first[2].id, 1)
    store.outbox.delivered([retry.id, expired.id], T0 + 10_001)
    assert store.outbox.outbox_backlog() == 0
    assert store.outbox.claim_outbox("e", T0 + 10**9, 1000, 10) == []


def test_flag_is_raised_once(store: Store):
    """The first flag records an event; repeating it does nothing."""
    (tid,) = submitted(store)
    event = store.watch.flag(tid, "watch_timeout", T0 + 5, {"timeout_s": 600})
    assert event is not None
    assert (event.kind, event.payload) == ("watch_timeout", {"timeout_s": 600})
    assert store.watch.flag(tid, "watch_timeout", T0 + 6, {}) is None
    assert store.watch.flag(tid, "stuck", T0 + 6, {}) is not None
    row = store.tasks.task(tid)
    assert row is not None
    assert (row.watch_timeout, row.stuck) == (True, True)


def test_counters_stats_and_meta_upsert(store: Store):
    """Counters add up per batch and globally; stats and meta overwrite."""
    batch = store.tasks.create_batch(None, new(1), T0)
    store.reports.bump({"requests.get": 2, "requests.create": 1}, batch.id)
    store.reports.bump({"requests.get": 3, "zero": 0}, batch.id)
    store.reports.bump({"requests.list": 1})
    assert store.reports.counters(batch.id) == {"requests.get": 5, "requests.create": 1}
    assert store.reports.counters() == {"requests.list": 1}
    store.meta.save_stats({"a": "1", "b": "2"})
    store.meta.save_stats({"a": "3"})
    assert store.meta.load_stats() == {"a": "3", "b": "2"}
    assert store.meta.get("k") is None
    store.meta.set("k", "v1")
    store.meta.set("k", "v2")
    assert store.meta.get("k") == "v2"


def test_report_on_a_known_dataset(store: Store):
    """Counts, percentiles, failures, units and request figures come out exact."""
    batch = store.tasks.create_batch("r", new(5), T0)
    ids = [r.id for r in store.tasks.tasks(batch.id)]
    for n, tid in enumerate(ids[:4]):
        store.tasks.mark_submitting(tid, T0)
        at = T0 + (n + 1) * 1000  # queue times 1, 2, 3, 4 s
        store.tasks.mark_submitted(tid, wire(f"k{tid}", "submitted", at), at, at)
    store.watch.apply(
        [Observation(ids[0], wire("k", "processing", T0 + 10), "poll", 0)], T0 + 11_000
    )
    store.watch.apply(
        [
            Observation(
                ids[0],
                wire("k", "succeed", T0 + 20, final_unit_deduction="1.5"),
                "callback",
                0,
            ),
            Observation(
                ids[1],
                wire("k", "succeed", T0 + 20, final_unit_deduction="2"),
                "poll",
                0,
            ),
            Observation(
                ids[2],
                wire("k", "failed", T0 + 20, task_status_msg="policy"),
                "poll",
                0,
            ),
        ],
        T0 + 21_000,
    )
    store.watch.flag(ids[3], "stuck", T0, {})
    store.reports.bump({"create": 4, "get": 5, "requests.get": 1, "1303": 9}, batch.id)
    rep = store.reports.report(batch.id)
    assert rep.total == 5
    assert rep.by_status == {
        TaskStatus.QUEUED: 1,
        TaskStatus.SUBMITTED: 1,
        TaskStatus.SUCCEED: 2,
        TaskStatus.FAILED: 1,
    }
    assert rep.queue_p50_s == pytest.approx(2.5)
    assert rep.queue_p95_s == pytest.approx(3.85)
    # processing: 10 s (processing seen), 19 s and 18 s (from submitted)
    assert rep.processing_p50_s == pytest.approx(18.0)
    assert rep.processing_p95_s == pytest.approx(18.9)
    assert rep.failures == {"policy": 1}
    assert rep.units == pytest.approx(3.5)
    assert (rep.stuck, rep.watch_timeout) == (1, 0)
    assert rep.learned_via == {"callback": 1, "poll": 2, "submit": 1}
    assert rep.requests == {"create": 4, "get": 6}
    assert rep.requests_per_task == pytest.approx(2.0)
    assert rep.counters == {"create": 4, "get": 5, "requests.get": 1, "1303": 9}
    assert store.reports.report().total == 5


def test_schedule_and_next_due(store: Store):
    """schedule() sets the next poll and frees the lease; claim_due honours it."""
    a, b = submitted(store, 2)
    assert store.watch.next_due_ms() == T0 + 1000
    claimed = store.watch.claim_due("w", T0 + 1000, 5000, 10)
    assert [r.id for r in claimed] == [a, b]
    assert store.watch.claim_due("v", T0 + 1000, 5000, 10) == []
    store.watch.schedule([(a, T0 + 3000), (b, T0 + 2000)])
    assert store.watch.next_due_ms() == T0 + 2000
    assert [r.id for r in store.watch.claim_due("v", T0 + 3000, 5000, 10)] == [b, a]
    assert store.watch.claim_due("x", T0 + 3000, 5000, 10, endpoint="/other") == []
    store.tasks.create_batch(None, new(1), T0 + 100)
    assert store.watch.next_due_ms() == T0 + 100
    assert store.watch.next_due_ms(include_queued=False) == T0 + 2000


def test_a_claim_larger_than_one_transaction_takes_the_earliest_due(store: Store):
    """A claim of more than CLAIM_CHUNK tasks (several short transactions) takes
    exactly the ``limit`` earliest due, leased once each, in due order."""
    ids = submitted(store, CLAIM_CHUNK * 2 + 30)
    store.watch.schedule([(t, T0 + 10_000 - i) for i, t in enumerate(ids)])
    limit = CLAIM_CHUNK * 2 + 7
    claimed = store.watch.claim_due("w", T0 + 10_000, 5000, limit)
    assert [r.id for r in claimed] == list(reversed(ids))[:limit]
    assert {r.lease_owner for r in claimed} == {"w"}
    rest = store.watch.claim_due("v", T0 + 10_000, 5000, 1000)
    assert sorted(r.id for r in rest) == sorted(ids[:23])


def test_pull_in_brings_far_polls_forward(store: Store):
    """pull_in() moves every later poll of an active task to the bound; nearer
    polls, a finished task and one past its watch deadline keep theirs."""
    a, b, c, d = submitted(store, 4)
    store.watch.schedule(
        [(a, T0 + 90_000), (b, T0 + 2_000), (c, T0 + 90_000), (d, T0 + 90_000)]
    )
    store.watch.flag(c, "watch_timeout", T0, {})
    store.watch.apply(
        [Observation(d, wire(f"k{d}", "succeed", T0 + 5_000), "poll", T0 + 5_000)],
        T0 + 5_000,
    )
    assert store.watch.pull_in(T0 + 8_000, T0 + 3_000) == 1
    due = {r.id: r.next_poll_ms for r in store.watch.active()}
    assert due == {a: T0 + 8_000, b: T0 + 2_000, c: T0 + 90_000}


def test_events_filters(store: Store):
    """Events can be read by task, by batch, after an id and up to a limit."""
    (a,), (b,) = submitted(store), submitted(store)
    every = store.outbox.events()
    assert [e.id for e in every] == sorted(e.id for e in every)
    assert {e.task_id for e in store.outbox.events(task_id=a)} == {a}
    assert len(store.outbox.events(batch_id=every[0].batch_id)) == 2
    assert store.outbox.events(since_id=every[0].id, limit=2) == every[1:3]
    held = store.tasks.tasks(statuses=[TaskStatus.SUBMITTED])
    watched = store.watch.active()
    assert [r.id for r in watched] == [r.id for r in held] == [a, b]
    # What watching needs, without the JSON columns it does not.
    assert all(w.body == {} and w.result is None for w in watched)
    assert [
        dataclasses.replace(w, body=h.body) for w, h in zip(watched, held, strict=True)
    ] == held
    assert store.tasks.count_by_status() == {TaskStatus.SUBMITTED: 2}


def test_a_sweep_reads_refs_of_all_and_full_rows_of_few(store: Store):
    """A list page is matched against light refs; only the tasks it names in full."""
    (a,), (b,) = submitted(store), submitted(store)
    store.tasks.create_batch(None, new(2), T0)  # queued: Kling does not hold them
    refs = store.watch.watched(EP)
    full = {r.id: r for r in store.watch.active()}
    assert [r.id for r in refs] == [a, b]
    for ref in refs:
        row = full[ref.id]
        assert (ref.task_id, ref.status, ref.next_poll_ms, ref.kling_updated_ms) == (
            row.task_id,
            row.status,
            row.next_poll_ms,
            row.kling_updated_ms,
        )
    assert store.watch.watched("/v1/images/generations") == []
    assert store.watch.active(ids=[b]) == [full[b]]
    assert store.watch.active(ids=[b, 999]) == [full[b]]  # an unknown id: nothing
    assert store.watch.active(EP, ids=[]) == []


def test_counts_of_some_statuses_and_whether_any_is_there(store: Store):
    """The engine's every-round questions: how many in flight, is anything queued."""
    (a,) = submitted(store)
    other = store.tasks.create_batch(None, new(3), T0)
    in_flight = (TaskStatus.SUBMITTING, TaskStatus.SUBMITTED, TaskStatus.PROCESSING)
    assert store.tasks.count_by_status(statuses=in_flight) == {TaskStatus.SUBMITTED: 1}
    assert store.tasks.count_by_status(other.id, [TaskStatus.QUEUED]) == {
        TaskStatus.QUEUED: 3
    }
    assert store.tasks.count_by_status(other.id, in_flight) == {}
    assert store.tasks.has_tasks([TaskStatus.QUEUED])
    assert store.tasks.has_tasks([TaskStatus.SUBMITTED], store.tasks.task(a).batch_id)  # type: ignore[union-attr]
    assert not store.tasks.has_tasks([TaskStatus.SUBMITTED], other.id)
    assert not store.tasks.has_tasks([TaskStatus.SUCCEED, TaskStatus.FAILED])


def test_reopening_keeps_everything(backend: Backend):
    """Closing and reopening the database loses nothing."""
    with backend.open() as first:
        (tid,) = submitted(first)
        first.reports.bump({"x": 1})
        rows, events = first.tasks.tasks(), first.outbox.events()
    with backend.open() as second:
        assert second.tasks.tasks() == rows
        assert second.outbox.events() == events
        assert second.reports.counters() == {"x": 1}
        assert second.tasks.task(tid) is not None


def test_a_newer_database_is_refused(backend: Backend):
    """A schema revision this code does not know is a StoreError, not a migration."""
    with backend.open() as store, store._engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(StoreError, match="newer than this klingmon"):
        backend.open()


def test_a_database_holding_other_tables_is_refused_and_left_alone(backend: Backend):
    """A mistyped path or URL must not turn someone's database into a store."""
    url = backend.url if "://" in backend.url else f"sqlite:///{backend.url}"
    theirs = sa.create_engine(url)
    with theirs.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO invoices (id) VALUES (7)")
    with pytest.raises(StoreError, match=r"not a klingmon store.*\(invoices\)"):
        backend.open()
    with theirs.connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["invoices"]
        assert conn.exec_driver_sql("SELECT id FROM invoices").scalar_one() == 7
    theirs.dispose()


def test_unknown_tasks_and_wrong_states_are_store_errors(store: Store):
    """Asking to move a task that is missing or in the wrong state raises StoreError."""
    (tid,) = submitted(store)
    with pytest.raises(StoreError, match="no task"):
        store.tasks.mark_submitting(999, T0)
    with pytest.raises(StoreError, match="not queued"):
        store.tasks.mark_submitting(tid, T0)
    with pytest.raises(StoreError, match="cannot be requeued"):
        store.tasks.requeue(tid, T0, T0, "x")
    assert store.tasks.task(999) is None
    assert store.tasks.task("nope") is None
    assert (
        store.watch.apply([Observation(999, wire("k", "succeed"), "poll", T0)], T0)
        == []
    )


def test_an_unreachable_server_is_a_store_error_without_the_password():
    """A PostgreSQL server that does not answer fails cleanly, password masked."""
    with pytest.raises(StoreError) as info:
        Store.open("postgresql+psycopg://km:s3cret@127.0.0.1:1/nodb?connect_timeout=2")
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)


def test_submission_claims_respect_the_slots(store: Store):
    """Leased queued and in-flight tasks hold a slot; stale ones come back."""
    store.tasks.create_batch(None, new(10), T0)
    first = store.tasks.claim_submissions("a", T0, 60_000, slots=3)
    assert [r.id for r in first] == [1, 2, 3]
    assert store.tasks.claim_submissions("b", T0, 60_000, slots=3) == []
    store.tasks.mark_submitting(1, T0)
    store.tasks.mark_submitted(1, wire("k1", "submitted", T0), T0, T0 + 1000)
    store.tasks.requeue(2, T0, T0, "1303")
    assert [
        r.id for r in store.tasks.claim_submissions("b", T0 + 1, 60_000, slots=3)
    ] == [2]
    store.tasks.mark_submitting(3, T0)
    # Worker "a" died: its submitting task comes back once the lease ends, before
    # any queued task, and still holds its slot.
    later = T0 + 120_000
    back = store.tasks.claim_submissions("c", later, 60_000, slots=3)
    assert [(r.id, r.status) for r in back] == [
        (2, TaskStatus.QUEUED),
        (3, TaskStatus.SUBMITTING),
    ]


def test_concurrent_workers_never_exceed_the_slots(backend: Backend, store: Store):
    """Eight workers claiming at the same instant share five slots, no more."""
    store.tasks.create_batch(None, new(100), T0)
    workers = 8
    start = threading.Barrier(workers)
    stores = [backend.open() for _ in range(workers)]
    got: dict[int, list[int]] = {}

    def claim(n: int) -> None:
        start.wait(timeout=10)
        got[n] = [
            r.id
            for r in stores[n].tasks.claim_submissions(f"w{n}", T0, 60_000, slots=5)
        ]

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for s in stores:
        s.close()
    claimed = [i for ids in got.values() for i in ids]
    assert len(got) == workers
    assert len(claimed) == 5
    assert len(set(claimed)) == 5


def test_lock_leases_pass_on_only_when_they_run_out(store: Store):
    """One holder at a time; renewals extend it; an expired lease changes hands."""
    assert store.fleet.acquire_lock("poll:x", "a", T0, 30_000)
    assert not store.fleet.acquire_lock("poll:x", "b", T0 + 1, 30_000)
    assert store.fleet.acquire_lock("poll:x", "a", T0 + 20_000, 30_000)
    assert not store.fleet.acquire_lock("poll:x", "b", T0 + 40_000, 30_000)
    assert store.fleet.acquire_lock("poll:x", "b", T0 + 50_001, 30_000)
    assert "b" in store.fleet.lease_owners()
    store.fleet.release("b")
    assert store.fleet.acquire_lock("poll:x", "c", T0 + 50_002, 30_000)


def test_heartbeats_show_live_stopped_and_silent_workers(store: Store):
    """A heartbeat registers a worker; a clean stop and silence read differently."""
    store.fleet.heartbeat("h:1:a", T0, {"slots": 5})
    store.fleet.heartbeat("h:2:b", T0)
    store.fleet.heartbeat("h:3:c", T0)
    store.fleet.heartbeat("h:1:a", T0 + 40_000, {"slots": 5})
    store.fleet.worker_stopped("h:2:b", T0 + 40_000)
    rows = {
        w.owner: w for w in store.fleet.workers(T0 + 45_000, alive_within_ms=30_000)
    }
    assert rows["h:1:a"].alive
    assert rows["h:1:a"].pid == 1
    assert rows["h:1:a"].info == {"slots": 5}
    assert not rows["h:2:b"].alive
    assert rows["h:2:b"].stopped_ms == T0 + 40_000
    assert not rows["h:3:c"].alive
    assert rows["h:3:c"].stopped_ms is None


def test_notify_wakes_a_listener(backend: Backend, store: Store):
    """A batch stored by one process wakes a listener at once (PostgreSQL only)."""
    if store.dialect != "postgresql":
        assert (
            store.fleet.listen(lambda: None)() is None
        )  # SQLite: nothing to listen to
        return
    woken = threading.Event()
    stop = store.fleet.listen(woken.set)
    try:
        with backend.open() as other:
            deadline = time.monotonic() + 10
            while not woken.is_set() and time.monotonic() < deadline:
                other.tasks.create_batch(None, new(1), T0)
                woken.wait(0.5)
    finally:
        stop()
    assert woken.is_set()


def test_cancel_tasks_cancels_only_what_was_never_sent(store: Store):
    """Queued and unleased: cancelled, with an event hooks hear; the rest is said."""
    store.tasks.create_batch("sent", new(3), T0)  # ids 1-3
    for row in store.tasks.claim_queued("w", T0, 60_000, 3):
        store.tasks.mark_submitting(row.id, T0)
    store.tasks.mark_submitted(1, wire("k1", "submitted", T0), T0, T0 + 1000)
    store.tasks.mark_submitted(3, wire("k3", "succeed", T0), T0, T0 + 1000)
    store.tasks.create_batch("unsent", new(3), T0)  # ids 4-6
    assert [r.id for r in store.tasks.claim_queued("live", T0, 60_000, 1)] == [4]
    assert [r.id for r in store.tasks.claim_queued("dead", T0 - 9_000, 1_000, 1)] == [5]
    before = {e.id for e in store.outbox.events()}

    done = store.tasks.cancel_tasks([6, 5, 4, 3, 2, 1, 999], T0 + 10, "not needed")

    assert [c.task.id for c in done.cancelled] == [5, 6]
    assert all(c.task.status is TaskStatus.CANCELLED for c in done.cancelled)
    assert all(c.task.lease_owner is None for c in done.cancelled)
    assert [r.id for r in done.sending] == [2, 4]  # a create may be under way
    assert [r.id for r in done.at_kling] == [1]
    assert [r.id for r in done.finished] == [3]
    fresh = [e for e in store.outbox.events() if e.id not in before]
    assert [(e.task_id, e.old_status, e.new_status, e.source) for e in fresh] == [
        (5, TaskStatus.QUEUED, TaskStatus.CANCELLED, "local"),
        (6, TaskStatus.QUEUED, TaskStatus.CANCELLED, "local"),
    ]
    assert {c.event_id for c in done.cancelled} == {e.id for e in fresh}
    owed = store.outbox.claim_outbox("hooks", T0 + 20, 1_000, 100)
    assert {i.event.id for i in owed} >= {e.id for e in fresh}
    assert store.tasks.task(5).status_msg == "not needed"  # type: ignore[union-attr]
    # Never sent afterwards, and a second cancel changes nothing.
    claimed = store.tasks.claim_submissions("w2", T0 + 120_000, 1_000, slots=10)
    assert 5 not in {r.id for r in claimed}
    assert 6 not in {r.id for r in claimed}
    assert store.tasks.task_ids_of_batch(2) == [4, 5, 6]
    again = store.tasks.cancel_tasks([4, 5, 6], T0 + 30)
    assert again.cancelled == []
    assert [r.id for r in again.sending] == [4]  # just leased by w2
    assert [r.id for r in again.finished] == [5, 6]
    assert len(store.outbox.events()) == len(before) + 2
    assert store.tasks.count_by_status(2) == {
        TaskStatus.QUEUED: 1,
        TaskStatus.CANCELLED: 2,
    }
