"""The ``downloads`` table: one row per result file, written ahead of any fetch.

Rows are created in the same transaction that records a task as ``succeed``, so a
crash can never lose the fact that a file is owed. The rule for which URLs may be
fetched: a row is only created from an authenticated observation (submit, poll,
sweep, an adopted task) or, for callbacks, once the receiver has confirmed them
(:meth:`DownloadQueue.confirm_downloads`, after a valid signature or a confirming GET).
A URL that arrived only in an unconfirmed callback is never stored here, so it is
never fetched.

Rows are claimed with leases, like tasks: several workers never fetch the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import RESULT_KINDS, DownloadState, TaskStatus
from klingmon.store._dialect import dialect_of
from klingmon.store._schema import downloads, tasks

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from klingmon.store._base import UnitOfWork

__all__ = [
    "DOWNLOAD_STATES",
    "RETENTION_MS",
    "WATERMARK_SUFFIX",
    "DownloadQueue",
    "DownloadRow",
    "queue_files",
]

#: Kling deletes results this long after the task was created.
RETENTION_MS = 30 * 24 * 3600 * 1000
#: pending: owed; downloading: claimed; done: on disk, hashed; failed: gave up after
#: retries (``klingmon download`` tries again); refused: unsafe URL, oversized file;
#: expired: Kling no longer has it.
DOWNLOAD_STATES = tuple(DownloadState)
_OPEN = (DownloadState.PENDING, DownloadState.DOWNLOADING)
_ROWS_PER_INSERT = 500
_NEVER = 2**62
#: The kind of a file's watermarked variant is its own plus this (``video-wm``,
#: ``image-wm``: eight characters, the ``kind`` column's width). Owed only on request.
WATERMARK_SUFFIX = "-wm"


@dataclass(frozen=True, slots=True)
class DownloadRow:
    """One result file.

    ``dest``: the path or fsspec URL its bytes go to (recorded by each fetch) or
    landed at (once done). ``size``/``sha256``: of the file once done; kept when it
    is owed again, as the hash a file found in place must have.
    """

    id: int
    task_id: int
    batch_id: int
    kind: str
    idx: int
    url: str
    dest: str | None
    status: str
    size: int | None
    sha256: str | None
    attempts: int
    last_error: str | None
    expires_ms: int | None
    next_try_ms: int | None
    lease_owner: str | None
    lease_until_ms: int | None
    created_ms: int
    done_ms: int | None


def _row(m: Mapping[Any, Any]) -> DownloadRow:
    return DownloadRow(**{c.name: m[c.name] for c in downloads.c})


def _files(
    result: Mapping[str, Any] | None, *, watermark: bool = False
) -> list[tuple[str, int, str]]:
    """``(kind, idx, url)`` of every file of every kind in a stored result.

    Kinds follow ``RESULT_KINDS`` (video, image, audio, voice, element); an audio
    task's mp3 and wav are two items, so two files. ``watermark``: the items'
    ``watermark_url`` variants instead, under ``<kind>-wm``.
    """
    field, suffix = ("watermark_url", WATERMARK_SUFFIX) if watermark else ("url", "")
    found: list[tuple[str, int, str]] = []
    for key, kind in RESULT_KINDS.items():
        items = (result or {}).get(key)
        if not isinstance(items, list):
            continue
        for idx, item in enumerate(items):
            url = item.get(field) if isinstance(item, dict) else None
            if isinstance(url, str) and url:
                found.append((kind + suffix, idx, url))
    return found


def queue_files(
    conn: sa.Connection,
    owed: Sequence[tuple[Mapping[Any, Any], int]],
    *,
    pg: bool | None = None,
    watermark: bool = False,
) -> int:
    """Owe every result file of these succeeded tasks, ``(task row, now ms)`` each,
    in one INSERT inside the caller's transaction.

    Idempotent: a file already owed (or fetched) is left as it is. ``pg`` is
    ignored (the connection knows its dialect); kept for callers that pass it.
    ``watermark``: owe the files' watermarked variants instead (see ``_files``).
    """
    del pg
    rows = [
        {
            "task_id": task["id"],
            "batch_id": task["batch_id"],
            "kind": kind,
            "idx": idx,
            "url": url,
            "status": "pending",
            "attempts": 0,
            "expires_ms": (task.get("kling_created_ms") or task["created_ms"])
            + RETENTION_MS,
            "created_ms": now_ms,
        }
        for task, now_ms in owed
        for kind, idx, url in _files(task.get("result"), watermark=watermark)
    ]
    if not rows:
        return 0
    stmt = (
        dialect_of(conn)
        .insert(downloads)
        .on_conflict_do_nothing(
            index_elements=[downloads.c.task_id, downloads.c.kind, downloads.c.idx]
        )
        .returning(downloads.c.id)
    )
    # A few hundred rows a statement: SQLite bounds the parameters of one.
    return sum(
        len(conn.execute(stmt.values(rows[i : i + _ROWS_PER_INSERT])).all())
        for i in range(0, len(rows), _ROWS_PER_INSERT)
    )


class DownloadQueue:
    """The download queue: owed files, leased to fetch, done or given up."""

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit

    def confirm_downloads(self, task_id: int, now_ms: int) -> int:
        """Owe a succeeded task's files once its result is confirmed.

        For the receiver: call it after a callback's signature checked out, or after
        a GET confirmed it. Returns how many rows were created.
        """
        with self._unit.write() as conn:
            m = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).mappings()
            row = m.first()
            if row is None or row["status"] != TaskStatus.SUCCEED.value:
                return 0
            return queue_files(conn, [(row, now_ms)])

    def ensure_downloads(
        self,
        now_ms: int,
        batch_id: int | None = None,
        *,
        watermark: bool = False,
        task_id: int | None = None,
    ) -> int:
        """Owe the files of succeeded tasks that have no rows yet (older stores).

        A task whose success was only ever heard from a callback is skipped.
        ``watermark`` (``DownloadSettings.watermark``): owe instead the
        ``watermark_url`` variants of the tasks whose plain files are owed (their
        result was confirmed), of one task when ``task_id`` is given. Idempotent.
        """
        if watermark:
            return self._owe_watermarks(now_ms, batch_id, task_id)
        owed = sa.exists().where(downloads.c.task_id == tasks.c.id)
        query = sa.select(tasks).where(
            tasks.c.status == TaskStatus.SUCCEED.value,
            tasks.c.result.is_not(None),
            sa.func.coalesce(tasks.c.learned_via, "") != "callback",
            ~owed,
        )
        if batch_id is not None:
            query = query.where(tasks.c.batch_id == batch_id)
        with self._unit.write() as conn:
            found = [(m, now_ms) for m in conn.execute(query).mappings()]
            return queue_files(conn, found)

    def _owe_watermarks(
        self, now_ms: int, batch_id: int | None, task_id: int | None
    ) -> int:
        owed = sa.exists().where(downloads.c.task_id == tasks.c.id)
        query = sa.select(tasks).where(
            tasks.c.status == TaskStatus.SUCCEED.value,
            tasks.c.result.is_not(None),
            owed,
        )
        if task_id is not None:
            query = query.where(tasks.c.id == task_id)
        if batch_id is not None:
            query = query.where(tasks.c.batch_id == batch_id)
        with self._unit.write() as conn:
            found = [(m, now_ms) for m in conn.execute(query).mappings()]
            return queue_files(conn, found, watermark=True)

    def claim_downloads(
        self,
        owner: str,
        now_ms: int,
        lease_ms: int,
        limit: int,
        *,
        batch_id: int | None = None,
        expires_before_ms: int | None = None,
        retry_failed: bool = False,
    ) -> list[DownloadRow]:
        """Lease up to ``limit`` owed files, the soonest to expire first."""
        if limit <= 0:
            return []
        c = downloads.c
        states = [*_OPEN, "failed"] if retry_failed else list(_OPEN)
        free = sa.or_(c.lease_owner.is_(None), c.lease_until_ms <= now_ms)
        due = sa.and_(
            c.status.in_(states),
            sa.or_(c.next_try_ms.is_(None), c.next_try_ms <= now_ms),
        )
        if batch_id is not None:
            due = sa.and_(due, c.batch_id == batch_id)
        if expires_before_ms is not None:
            due = sa.and_(due, c.expires_ms <= expires_before_ms)
        order = (sa.func.coalesce(c.expires_ms, _NEVER), c.id)
        pick = (
            sa.select(c.id)
            .where(due, free)
            .order_by(*order)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            downloads.update()
            .where(c.id.in_(pick.scalar_subquery()), free)
            .values(
                status="downloading",
                lease_owner=owner,
                lease_until_ms=now_ms + lease_ms,
            )
            .returning(*downloads.c)
        )
        with self._unit.write() as conn:
            rows = [_row(m) for m in conn.execute(claim).mappings()]
        rows.sort(key=lambda r: (r.expires_ms or _NEVER, r.id))
        return rows

    def set_download_dest(self, download_id: int, dest: str) -> str:
        """Record where a file's bytes go, before the first one (write-ahead).

        Each fetch decides the place anew from its own settings; a file already
        done keeps the place it landed. Returns the stored destination.
        """
        with self._unit.write() as conn:
            conn.execute(
                downloads.update()
                .where(downloads.c.id == download_id, downloads.c.status != "done")
                .values(dest=dest)
            )
            stored = conn.scalar(
                sa.select(downloads.c.dest).where(downloads.c.id == download_id)
            )
        return str(stored)

    def download_done(
        self, download_id: int, now_ms: int, *, size: int, sha256: str
    ) -> None:
        with self._unit.write() as conn:
            conn.execute(
                downloads.update()
                .where(downloads.c.id == download_id)
                .values(
                    status="done",
                    size=size,
                    sha256=sha256,
                    done_ms=now_ms,
                    last_error=None,
                    next_try_ms=None,
                    lease_owner=None,
                    lease_until_ms=None,
                )
            )

    def download_failed(
        self,
        download_id: int,
        error: str,
        *,
        status: str | None = None,
        next_try_ms: int | None = None,
    ) -> None:
        """Count one failed attempt; ``status`` ends the claim (failed, refused ...)."""
        values: dict[str, Any] = {
            "attempts": downloads.c.attempts + 1,
            "last_error": error[:2000],
        }
        if status is not None:
            if status not in DOWNLOAD_STATES:
                raise ValueError(f"unknown download status {status!r}")
            values |= {
                "status": status,
                "next_try_ms": next_try_ms,
                "lease_owner": None,
                "lease_until_ms": None,
            }
        with self._unit.write() as conn:
            conn.execute(
                downloads.update().where(downloads.c.id == download_id).values(values)
            )

    def requeue_downloads(self, ids: Sequence[int]) -> None:
        """Owe these files again (a verify found them missing or changed).

        The size and hash of a file once done are kept: a file found in its place
        is then taken as done only if it still has that hash.
        """
        if not ids:
            return
        with self._unit.write() as conn:
            conn.execute(
                downloads.update()
                .where(downloads.c.id.in_(list(ids)))
                .values(
                    status="pending",
                    attempts=0,
                    done_ms=None,
                    next_try_ms=None,
                    last_error=None,
                    lease_owner=None,
                    lease_until_ms=None,
                )
            )

    def download_row(self, download_id: int) -> DownloadRow | None:
        """One ``downloads`` row by id."""
        query = sa.select(downloads).where(downloads.c.id == download_id)
        with self._unit.read() as conn:
            m = conn.execute(query).mappings().first()
        if m is None:
            return None
        return DownloadRow(**{col.name: m[col.name] for col in downloads.c})

    def download_rows(
        self,
        batch_id: int | None = None,
        statuses: Collection[str] | None = None,
        task_id: int | None = None,
    ) -> list[DownloadRow]:
        query = sa.select(downloads).order_by(downloads.c.id)
        if batch_id is not None:
            query = query.where(downloads.c.batch_id == batch_id)
        if task_id is not None:
            query = query.where(downloads.c.task_id == task_id)
        if statuses is not None:
            query = query.where(downloads.c.status.in_(list(statuses)))
        with self._unit.read() as conn:
            return [_row(m) for m in conn.execute(query).mappings()]

    def download_counts(
        self, batch_id: int | None = None, *, now_ms: int = 0, within_ms: int = 0
    ) -> dict[str, int]:
        """Files by status, and ``expiring``: not done, deleted within ``within_ms``."""
        c = downloads.c
        where = [] if batch_id is None else [c.batch_id == batch_id]
        with self._unit.read() as conn:
            counts = {
                str(s): int(n)
                for s, n in conn.execute(
                    sa.select(c.status, sa.func.count())
                    .where(*where)
                    .group_by(c.status)
                )
            }
            soon = conn.scalar(
                sa.select(sa.func.count()).where(
                    *where,
                    c.status != "done",
                    c.expires_ms <= now_ms + within_ms,
                )
            )
        counts["expiring"] = int(soon or 0)
        return counts

    def next_download_ms(self, batch_id: int | None = None) -> int | None:
        """When the next owed file may be tried (None: nothing is owed)."""
        c = downloads.c
        query = sa.select(sa.func.min(sa.func.coalesce(c.next_try_ms, 0))).where(
            c.status.in_(_OPEN)
        )
        if batch_id is not None:
            query = query.where(c.batch_id == batch_id)
        with self._unit.read() as conn:
            value = conn.scalar(query)
        return None if value is None else int(value)

    def files_owed(self, batch_id: int | None = None) -> int:
        """Result files of succeeded tasks (of one batch, or all) not on disk yet.

        Pending, downloading, failed and refused files are owed (a refusal is
        fixed by allowing the origin); expired ones are gone from Kling, so not.
        A success whose files were never queued owes every file its result lists:
        exactly the case a user must hear about.
        """
        succeeded = tasks.c.status == TaskStatus.SUCCEED.value
        if batch_id is not None:
            succeeded = sa.and_(succeeded, tasks.c.batch_id == batch_id)
        not_done = (
            sa.select(sa.func.count())
            .select_from(downloads.join(tasks, downloads.c.task_id == tasks.c.id))
            .where(succeeded, downloads.c.status.not_in(["done", "expired"]))
        )
        unqueued = sa.select(tasks.c.result).where(
            succeeded,
            tasks.c.result.is_not(None),
            ~sa.exists().where(downloads.c.task_id == tasks.c.id),
        )
        with self._unit.read() as conn:
            waiting = int(conn.scalar(not_done) or 0)
            never = sum(len(_files(r)) for r in conn.execute(unqueued).scalars())
        return waiting + never
