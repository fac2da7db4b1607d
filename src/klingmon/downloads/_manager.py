"""The download manager: results come home, safely, once, through crashes.

Each owed file (a ``downloads`` row) is claimed with a lease; its destination is
decided when it is fetched, from the settings of the run that fetches it, and
recorded in the store before the first byte. It is streamed into ``<dest>.part``; a
restart resumes that part file with ``Range: bytes=<size>-`` (a server that ignores
the range is read from zero), and a part or finished file left where an earlier run
with other settings put it is moved to the new place first. Each answer is checked
to be the result (:mod:`._download_checks`: content type, range, magic bytes), the
size against ``Content-Length``/``Content-Range``; the SHA-256 is taken over the
whole file, the file is renamed into place with :func:`os.replace`, and only then is
the row marked done. A restart that finds the final file but no done row re-hashes
it and marks it done (unless the store knows another hash for it): nothing is
fetched twice.

Safety: only ``https`` URLs whose host is on the allowlist (Kling's CDN by default),
or an exact origin named in ``allow_origins`` (the simulator's, over http); every
redirect hop is checked again; files above ``max_bytes`` are refused, and all
parallel transfers together hold at most ``max_in_flight`` bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx

from klingmon._clock import Clock, SystemClock, to_ms
from klingmon._owners import dead_local_owner, default_owner
from klingmon.domain import RESULT_KINDS
from klingmon.downloads._checks import (
    ByteBudget,
    check_content_type,
    check_partial,
    content_range,
    looks_like_media,
)
from klingmon.downloads._filenames import NameFields, render_name
from klingmon.downloads._files import (
    feed_file,
    head,
    local_dest,
    local_path,
    move_leftovers,
    remote_write,
    settled,
    sidecar_record,
    upload,
)
from klingmon.downloads._rules import (
    DownloadError,
    DownloadEvent,
    DownloadRefusedError,
    DownloadSettings,
    check_url,
    show_url,
)
from klingmon.errors import KlingmonError
from klingmon.policy import backoff

if TYPE_CHECKING:
    from collections.abc import Callable

    from klingmon.store import DownloadRow, Store

__all__ = ["Downloader"]

logger = logging.getLogger(__name__)

_MAX_REDIRECTS = 5
_DAY_MS = 24 * 3600 * 1000


@dataclass
class _Fetch:
    """One file's transfer state: where its bytes go, how many came."""

    part: Path
    digest: Any = field(default_factory=hashlib.sha256)
    received: int = 0
    total: int | None = None
    #: Some answer named no content type: check the file's first bytes.
    sniff: bool = False
    #: The hop being read, as messages show it, and the byte its Range asked for.
    shown: str = ""
    asked_from: int | None = None


class Downloader:
    """Claims owed files and fetches them, within ``settings.parallel`` at once."""

    def __init__(
        self,
        store: Store,
        settings: DownloadSettings,
        *,
        clock: Clock | None = None,
        owner: str | None = None,
        client: httpx.AsyncClient | None = None,
        on_event: Callable[[DownloadEvent], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self.owner = owner or default_owner()
        self._client = client
        self._own_client = client is None
        self.on_event = on_event
        self._rng = random.Random()
        self._limit = asyncio.Semaphore(settings.parallel)
        self._budget = ByteBudget(settings.budget)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.settings.timeout, follow_redirects=False
            )
        return self._client

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- rounds ----------------------------------------------------------------

    async def round(
        self,
        *,
        batch_id: int | None = None,
        expiring_within_s: float | None = None,
        retry_failed: bool = False,
        limit: int = 100,
    ) -> list[DownloadRow]:
        """Claim and fetch one round of owed files; returns the rows claimed."""
        now_ms = to_ms(self.clock.now())
        before = (
            None if expiring_within_s is None else now_ms + to_ms(expiring_within_s)
        )
        rows = self.store.downloads.claim_downloads(
            self.owner,
            now_ms,
            to_ms(self.settings.lease_seconds),
            limit,
            batch_id=batch_id,
            expires_before_ms=before,
            retry_failed=retry_failed,
        )
        if rows:
            await asyncio.gather(*(self.fetch(row) for row in rows))
        return rows

    async def run(
        self,
        *,
        batch_id: int | None = None,
        expiring_within_s: float | None = None,
    ) -> dict[str, int]:
        """Fetch everything owed (failed files get another chance); counts by status.

        Claims left by a killed process on this host are taken over at once; other
        hosts' claims lapse with their leases.
        """
        for owner in self.store.fleet.lease_owners():
            if owner != self.owner and dead_local_owner(owner):
                self.store.fleet.release(owner)
                logger.info("lease.reclaimed", extra={"owner": owner})
        now_ms = to_ms(self.clock.now())
        self.store.downloads.ensure_downloads(now_ms, batch_id)
        if self.settings.watermark:
            self.store.downloads.ensure_downloads(now_ms, batch_id, watermark=True)
        # Failed and refused files get one more chance (the settings may have
        # changed); within this run, a file that fails again stays failed.
        horizon = (
            None if expiring_within_s is None else now_ms + to_ms(expiring_within_s)
        )
        again = [
            r.id
            for r in self.store.downloads.download_rows(
                batch_id, statuses=("failed", "refused")
            )
            if horizon is None or (r.expires_ms or 0) <= horizon
        ]
        self.store.downloads.requeue_downloads(again)
        while await self.round(batch_id=batch_id, expiring_within_s=expiring_within_s):
            pass
        return self.store.downloads.download_counts(batch_id)

    # -- one file --------------------------------------------------------------

    async def fetch(self, row: DownloadRow) -> bool:
        """Bring one file home; True when it is done. Never raises for one file."""
        async with self._limit:
            try:
                dest = await self._destination(row)
            except (KlingmonError, OSError) as exc:
                message = _describe(exc)
                self.store.downloads.download_failed(row.id, message, status="failed")
                self._emit("failed", row.id, row.dest or "", error=message)
                return False
            for attempt in range(1, self.settings.attempts + 1):
                try:
                    await self._fetch_once(row, dest)
                except DownloadRefusedError as exc:
                    await asyncio.to_thread(self._discard, dest)
                    self.store.downloads.download_failed(
                        row.id, exc.message, status="refused"
                    )
                    self._emit("failed", row.id, dest, error=exc.message)
                    logger.warning(
                        "download.refused",
                        extra={"download": row.id, "why": exc.message},
                    )
                    return False
                except (DownloadError, httpx.HTTPError, OSError) as exc:
                    message = _describe(exc)
                    last = attempt == self.settings.attempts
                    status = self._final_status(row, exc) if last else None
                    if isinstance(exc, DownloadError) and not exc.retryable:
                        status = self._final_status(row, exc)
                    self.store.downloads.download_failed(row.id, message, status=status)
                    logger.info(
                        "download.retry",
                        extra={"download": row.id, "attempt": attempt, "why": message},
                    )
                    if status is not None:
                        self._emit("failed", row.id, dest, error=message)
                        return False
                    await self.clock.asleep(
                        backoff(
                            attempt,
                            base=self.settings.backoff_base,
                            cap=self.settings.backoff_cap,
                            rng=self._rng,
                        )
                    )
                else:
                    self._owe_variants(row)
                    return True
        return False  # pragma: no cover - the loop always returns

    def _owe_variants(self, row: DownloadRow) -> None:
        """With ``watermark`` on, a plain file come home owes its task's variants,
        so a later round (or another worker) fetches them with the same guarantees."""
        if self.settings.watermark and not row.kind.endswith("-wm"):
            now_ms = to_ms(self.clock.now())
            self.store.downloads.ensure_downloads(
                now_ms, watermark=True, task_id=row.task_id
            )

    def _final_status(self, row: DownloadRow, exc: BaseException) -> str:
        gone = isinstance(exc, _GoneError)
        now_ms = to_ms(self.clock.now())
        if gone and row.expires_ms is not None and now_ms >= row.expires_ms - _DAY_MS:
            return "expired"
        return "failed"

    async def _destination(self, row: DownloadRow) -> str:
        """Where this run puts the file, recorded before the first byte.

        Decided now, from these settings (not pinned by an earlier run): bytes an
        earlier run left elsewhere are moved here, so they are neither lost nor
        fetched again.
        """
        dest = self._render(row)
        if row.dest and row.dest != dest and not self.settings.remote:
            await asyncio.to_thread(move_leftovers, row.dest, dest)
        return self.store.downloads.set_download_dest(row.id, dest)

    def _render(self, row: DownloadRow) -> str:
        task = self.store.tasks.task(row.task_id)
        batch = self.store.tasks.batch(row.batch_id)
        if task is None or batch is None:
            raise DownloadError(f"download {row.id}: its task is not in the store")
        ids = _result_item(task.result, row.kind, row.idx)
        rel = render_name(
            self.settings.template,
            NameFields(
                batch=batch.name,
                index=task.seq,
                task_id=task.task_id or task.external_task_id,
                external_task_id=task.external_task_id,
                prompt=task.prompt,
                endpoint=task.endpoint,
                model=task.model_name,
                mode=task.mode,
                video_id=ids.get("id") or ids.get("index"),
                kind=row.kind,
                n=row.idx,
                url=row.url,
                format=ids.get("format"),
            ),
        )
        out = self.settings.out
        if self.settings.remote:
            return f"{out.rstrip('/')}/{rel}"
        return local_dest(out, rel)

    def _staging(self, dest: str) -> Path:
        if not self.settings.remote:
            return Path(dest)
        import tempfile  # noqa: PLC0415 - only remote destinations stage locally

        key = hashlib.sha256(self.settings.out.encode()).hexdigest()[:16]
        default = Path(tempfile.gettempdir()) / "klingmon-staging" / key
        base = self.settings.staging or str(default)
        rel = dest[len(self.settings.out.rstrip("/")) + 1 :]
        return local_path(base, rel)

    def _discard(self, dest: str) -> None:
        """Drop the part file of a refused download: nothing of it is kept."""
        local = self._staging(dest)
        local.with_name(local.name + ".part").unlink(missing_ok=True)

    async def _fetch_once(self, row: DownloadRow, dest: str) -> None:
        local = self._staging(dest)
        if await self._already_there(row, dest, local):
            return
        part = local.with_name(local.name + ".part")
        part.parent.mkdir(parents=True, exist_ok=True)
        state = _Fetch(part)
        if part.exists():
            state.received = await asyncio.to_thread(feed_file, part, state.digest)
        self._emit("start", row.id, dest, state.received)
        await self._stream(row, dest, state)
        size, sha = state.received, state.digest.hexdigest()
        if state.total is not None and size != state.total:
            raise DownloadError(f"got {size} of {state.total} bytes")
        if state.sniff and not looks_like_media(await asyncio.to_thread(head, part)):
            raise DownloadRefusedError(
                f"refused {state.shown}: no Content-Type, and the bytes are "
                "not a known video, image or audio format"
            )
        part.replace(local)
        if self.settings.remote:
            await asyncio.to_thread(upload, local, dest)
        await self._finish(row, dest, local, size, sha)

    async def _already_there(self, row: DownloadRow, dest: str, local: Path) -> bool:
        """A crash after the rename, before the store heard: re-hash and mark done."""
        found = await asyncio.to_thread(settled, local, dest, self.settings.remote)
        if found is None:
            return False
        if row.sha256 is not None and found[1] != row.sha256:
            # Owed again because it changed (``verify --requeue``): fetch it anew.
            logger.info("download.replacing_changed", extra={"download": row.id})
            return False
        logger.info("download.found", extra={"download": row.id})
        await self._finish(row, dest, local, *found)
        return True

    async def _finish(
        self, row: DownloadRow, dest: str, local: Path, size: int, sha: str
    ) -> None:
        if self.settings.sidecar:
            await asyncio.to_thread(self._write_sidecar, row, dest, local, size, sha)
        if self.settings.remote:
            await asyncio.to_thread(local.unlink, missing_ok=True)
        self.store.downloads.download_done(
            row.id, to_ms(self.clock.now()), size=size, sha256=sha
        )
        self._emit("done", row.id, dest, size, size)
        logger.info("download.done", extra={"download": row.id, "size": size})

    async def _stream(self, row: DownloadRow, dest: str, state: _Fetch) -> None:
        url = row.url
        for _hop in range(_MAX_REDIRECTS + 1):
            check_url(url, self.settings)
            state.shown, state.asked_from = show_url(url), state.received or None
            headers = {"Range": f"bytes={state.received}-"} if state.received else {}
            request = self.client.build_request("GET", url, headers=headers)
            response = await self.client.send(request, stream=True)
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise DownloadError(
                            f"redirect without a Location: {show_url(url)}"
                        )
                    url = urljoin(url, location)
                    continue
                await self._body(row, dest, response, state)
                return
            finally:
                await response.aclose()
        raise DownloadRefusedError(
            f"more than {_MAX_REDIRECTS} redirects: {show_url(url)}"
        )

    async def _body(
        self, row: DownloadRow, dest: str, response: httpx.Response, state: _Fetch
    ) -> None:
        status, shown = response.status_code, state.shown
        if status == 416 and state.received:
            info = content_range(response.headers.get("content-range"))
            if info is not None and info[1] == state.received:
                state.total = state.received  # the part file was complete already
                state.sniff = True  # no answer named its type: check its bytes
                return
            _restart(state)
            raise DownloadError("range not satisfiable; starting over")
        if status in {404, 410}:
            raise _GoneError(f"{shown} answered {status}")
        if status == 206:
            try:
                state.total = check_partial(
                    response.headers.get("content-range"),
                    asked_from=state.asked_from,
                    shown=shown,
                )
            except DownloadError:
                _restart(state)
                raise
        elif status == 200:
            if state.received:
                _restart(state)  # the server ignored Range: read from the start
            length = response.headers.get("content-length")
            state.total = int(length) if length and length.isdigit() else None
        elif 400 <= status < 500 and status not in {408, 425, 429}:
            raise _FatalError(f"{shown} answered {status}")
        else:
            raise DownloadError(f"{shown} answered {status}")
        # Sticky: bytes that came with no content type are checked at the end.
        sniff = check_content_type(response.headers.get("content-type"), shown)
        state.sniff = state.sniff or sniff
        limit = self.settings.max_bytes
        if state.total is not None and state.total > limit:
            raise DownloadRefusedError(
                f"refused {shown}: {state.total} bytes is over the {limit}-byte cap"
            )
        coming = (limit if state.total is None else state.total) - state.received
        async with self._budget.hold(coming):
            await self._write(row, dest, response, state)

    async def _write(
        self, row: DownloadRow, dest: str, response: httpx.Response, state: _Fetch
    ) -> None:
        shown, limit = state.shown, self.settings.max_bytes
        mode = "ab" if state.received else "wb"
        with state.part.open(mode) as f:
            async for chunk in response.aiter_bytes(self.settings.chunk_size):
                if state.received + len(chunk) > limit:
                    raise DownloadRefusedError(
                        f"refused {shown}: over the {limit}-byte cap"
                    )
                f.write(chunk)
                f.flush()
                state.digest.update(chunk)
                state.received += len(chunk)
                self._emit("progress", row.id, dest, state.received, state.total)
            os.fsync(f.fileno())

    def _write_sidecar(
        self, row: DownloadRow, dest: str, local: Path, size: int, sha: str
    ) -> None:
        task = self.store.tasks.task(row.task_id)
        batch = self.store.tasks.batch(row.batch_id)
        record = sidecar_record(row, task, batch, dest, size=size, sha256=sha)
        text = json.dumps(record, indent=2, sort_keys=True, default=str)
        if self.settings.remote:
            remote_write(dest + ".json", text)
            return
        sidecar = local.with_name(local.name + ".json")
        tmp = sidecar.with_name(sidecar.name + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(sidecar)

    def _emit(
        self,
        kind: str,
        download_id: int,
        dest: str,
        received: int = 0,
        total: int | None = None,
        *,
        error: str | None = None,
    ) -> None:
        if self.on_event is not None:
            self.on_event(
                DownloadEvent(kind, download_id, dest, received, total, error)
            )


class _GoneError(DownloadError):
    """404/410: the file is gone (expired) or never was."""

    retryable = False


class _FatalError(DownloadError):
    """A 4xx that trying again will not change."""

    retryable = False


def _restart(state: _Fetch) -> None:
    state.part.unlink(missing_ok=True)
    state.digest = hashlib.sha256()
    state.received = 0
    state.total = None
    state.sniff = False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KlingmonError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _result_item(result: dict[str, Any] | None, kind: str, idx: int) -> dict[str, Any]:
    base = kind.removesuffix("-wm")
    key = next((k for k, v in RESULT_KINDS.items() if v == base), "videos")
    items = (result or {}).get(key) or []
    item = items[idx] if 0 <= idx < len(items) else {}
    return {
        k: str(v)
        for k, v in item.items()
        if k in {"id", "index", "format"} and v is not None
    }
